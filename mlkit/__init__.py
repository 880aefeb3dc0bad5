"""mlkit: a small, readable meta-learning kit for the notebooks in ``notebooks/``.

Read it in this order: tasks.py -> models.py -> maml.py -> train.py -> evaluate.py.
"""
from .checkpoints import load_checkpoint, load_shipped, save_checkpoint
from .evaluate import adaptation_curves, mean_ci95, meta_test
from .images import EpisodeFamily
from .maml import ANIL, FOMAML, MAML, MetaSGD, Reptile
from .models import MLP, Conv4
from .protonet import ProtoNet
from .runtime import pick_device, torch_threads
from .tasks import SinusoidFamily, TaskBatch
from .train import History, Pretrain, make_learner, meta_train

__version__ = "0.1.0"
