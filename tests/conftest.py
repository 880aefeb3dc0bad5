import matplotlib
import torch

matplotlib.use("Agg")  # this process only: the notebooks' kernels keep their inline backend

# The kit's models are small: one thread is as fast as two, and far faster when
# another process keeps the second core busy (see DESIGN notes).
torch.set_num_threads(1)
