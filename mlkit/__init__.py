"""mlkit: a small, readable meta-learning kit for the notebooks in ``notebooks/``.

Read it in this order: tasks.py, episodes.py, models.py, learner.py, maml.py, protonet.py,
train.py, evaluate.py (then fast_maml.py, checkpoints.py, plots.py, widgets.py); tools/
holds the rest.

Glossary
--------
task          a small learning problem: a support set to adapt on and a query set to test on
support set   the K examples a learner adapts on ("training data" of one task)
query set     held-out examples of the same task, used to score the adapted model
shot (K)      support examples per task (regression) or per class (classification)
way (N)       classes per classification task; "5-way 1-shot" is 5 classes, 1 image each
episode       one N-way K-shot classification task (Vinyals et al. 2016)
task family   where tasks come from: ``SinusoidFamily``, ``EpisodeFamily``
meta-batch    the number of tasks in one outer step
inner loop    adapting to one task: a few SGD *steps* on its support set, of size inner lr
outer loop    meta-training: changing the shared start so that the inner loop works well,
              with the outer lr (Adam)
step          one SGD update of the inner loop; an *iteration* is one outer-loop update
lr            learning rate (step size): inner lr (alpha) and outer lr (beta)
meta-test     adapting to fresh tasks and reporting the query error with a 95% CI
"""
from .algorithms import make_learner
from .checkpoints import load_checkpoint, load_shipped, save_checkpoint
from .episodes import EpisodeFamily, evaluation_family, sample_episodes
from .evaluate import image_test_steps, mean_ci95, meta_test
from .learner import fine_tune
from .maml import ANIL, FOMAML, MAML, MetaSGD, Pretrain, Reptile
from .models import MLP, Conv4
from .protonet import ProtoNet
from .runtime import pick_device, torch_threads
from .tasks import SinusoidFamily, TaskBatch
from .train import History, meta_train

__version__ = "0.2.0"
