"""The paper's methods, built on features and matchers: keypoint transfer by alignment (Table 2,
:mod:`.transfer`, :mod:`.pair_transfer`), keypoint classification (Table 3, :mod:`.classification`), keypoint
prediction (Table 4, :mod:`.prediction`) and nearest-neighbour reconstruction (Figures 1-2,
:mod:`.reconstruction`)."""
