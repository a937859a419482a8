"""Runtime services that know nothing of convcorr's science: atomic file writes, progress bars, parallel and
resumable task runs, the torch device, the shared-data and cache folders. Imports nothing of convcorr's."""
