"""Pictures of runs: PNG plots of a recorded agent run (matplotlib, Agg), and browser screenshots."""
