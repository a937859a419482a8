import numpy as np, time, torch, sys
from convcorr.flow_torch import bp_flow_batch
dev = "cuda" if torch.cuda.is_available() else "cpu"
print(dev, torch.cuda.get_device_name() if dev == "cuda" else "")
for g in (13, 32, 48):
    for B in (1, 16, 64):
        rng = np.random.default_rng(0)
        fs = torch.tensor(rng.standard_normal((B, g, g, 256)), dtype=torch.float32, device=dev)
        ft = torch.tensor(rng.standard_normal((B, g, g, 256)), dtype=torch.float32, device=dev)
        bp_flow_batch(fs[:1, :6, :6], ft[:1, :6, :6], n_iter=2)
        ts = []
        for rep in range(3):
            if dev == "cuda": torch.cuda.synchronize()
            t = time.perf_counter(); r = bp_flow_batch(fs, ft, n_iter=10, tol_iters=11)
            if dev == "cuda": torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        print(g, B, "pairs/s", B / np.median(ts), "mem GB", torch.cuda.max_memory_allocated() / 1e9 if dev == "cuda" else 0, flush=True)
