"""A catalogue of plausible bugs, each one small patch to mlkit, and the tests that must catch it.

``tests/test_mutations.py`` applies each patch to a copy of the kit and runs only the tests
named here; a bug that no test notices fails the suite. Every entry is a mistake a learner or
a maintainer could really make (several are the bugs notebook 08 hunts).
"""
from typing import NamedTuple


class Bug(NamedTuple):
    name: str      # what goes wrong, in words
    file: str      # path of the patched file, from the repository root
    old: str       # text that must occur exactly once in the file
    new: str       # its replacement
    tests: tuple   # pytest node ids that must fail with the bug in place


BUGS = [
    Bug("inner step on .data: the graph to theta is cut",
        "mlkit/maml.py", "new[name] = params[name] - size * g",
        "new[name] = params[name].data - size * g",
        ("tests/test_maml.py::test_maml_meta_gradient_matches_per_task_reference",)),
    Bug("missing create_graph: MAML is silently first order",
        "mlkit/maml.py", "create_graph=create_graph)", "create_graph=False)",
        ("tests/test_maml.py::test_maml_meta_gradient_matches_per_task_reference",
         "tests/test_maml.py::test_conv4_second_order_really_flows")),
    Bug("loss normalised twice: the MSE divided again by the number of points",
        "mlkit/tasks.py", "return ((pred - target) ** 2).flatten(1).mean(1)",
        "return ((pred - target) ** 2).flatten(1).mean(1) / pred.shape[1]",
        ("tests/test_learner.py::test_fine_tune_equals_plain_sgd_per_task",)),
    Bug("labels not permuted: label 0 is always the class with the smallest index",
        "mlkit/episodes.py", ".topk(ways, dim=1).indices", ".topk(ways, dim=1).indices.sort(1).values",
        ("tests/test_episodes.py::test_labels_are_shuffled_in_every_episode",)),
    Bug("train and test classes mixed: the held-out family loads the background alphabets",
        "mlkit/episodes.py", 'return EpisodeFamily(load_glyphs(split), ways, name="glyphs"',
        'return EpisodeFamily(load_glyphs("background"), ways, name="glyphs"',
        ("tests/test_episodes.py::test_the_evaluation_family_holds_only_held_out_classes",)),
    Bug("wrong CI formula: the standard deviation divided by n",
        "mlkit/evaluate.py", "values.std(unbiased=True)", "values.std(unbiased=False)",
        ("tests/test_evaluate.py::test_ci95_formula",)),
    Bug("Meta-SGD's rates detached: they are never learned",
        "mlkit/maml.py", 'return self.lrs[name.replace(".", "_")]',
        'return self.lrs[name.replace(".", "_")].detach()',
        ("tests/test_maml.py::test_metasgd_learning_rates_get_gradients_matching_reference",)),
    Bug("ANIL adapts the body as well as the head",
        "mlkit/maml.py", "return list(self.model.head_names)",
        "return [name for name, _ in self.model.named_parameters()]",
        ("tests/test_maml.py::test_anil_matches_reference_and_leaves_body_untouched",)),
    Bug("Reptile steps away from the adapted weights",
        "mlkit/maml.py", "p.grad = p - params[name].mean(0)", "p.grad = params[name].mean(0) - p",
        ("tests/test_maml.py::test_reptile_moves_towards_adapted_weights",)),
    Bug("ProtoNet prototypes averaged over all support images instead of per class",
        "mlkit/protonet.py", "return sums / onehot.sum(1).unsqueeze(-1)",
        "return z_support.mean(1, keepdim=True).expand_as(sums)",
        ("tests/test_protonet.py::test_prototypes_are_class_means_with_labels_in_any_order",)),
    Bug("diverged never set: a blown-up task counts as a normal one",
        "mlkit/learner.py", "diverged = diverged | ~ok", "diverged = diverged",
        ("tests/test_learner.py::test_diverging_tasks_are_marked_and_frozen_and_others_are_untouched",)),
    Bug("a panel showing another setting's numbers: the explorer fine-tunes 1 step whatever "
        "the slider says",
        "mlkit/widgets.py",
        "r = fine_tune(learner, batch, steps, None if learner.learned_inner_lr else lr)",
        "r = fine_tune(learner, batch, 1, None if learner.learned_inner_lr else lr)",
        ("tests/test_widgets.py::test_explorer_shows_the_error_of_exactly_its_settings",)),
    Bug("a checkpoint saved without its optimiser state, so --resume restarts Adam",
        "mlkit/train.py", '"optimizer": self.optimizer_state,', '"optimizer": None,',
        ("tests/test_train.py::test_continued_through_a_checkpoint_file_equals_an_uninterrupted_one",)),
    Bug("off by one: adapt takes one step more than asked",
        "mlkit/maml.py", "            for _ in range(steps):\n                params = self.inner_step(",
        "            for _ in range(steps + 1):\n                params = self.inner_step(",
        ("tests/test_learner.py::test_fine_tune_equals_the_learners_own_inner_loop",)),
    Bug("first-order MAML with the multi-step loss becomes second order",
        "mlkit/maml.py", "create_graph=not self.first_order)", "create_graph=True)",
        ("tests/test_maml.py::test_fomaml_multi_step_loss_matches_first_order_reference",)),
    Bug("test tasks depend on how they are split into passes",
        "mlkit/evaluate.py", "manual_seed((seed * 1_000_003 + i) % 2**63)",
        "manual_seed((seed * 1_000_003 + first) % 2**63)",
        ("tests/test_evaluate.py::test_same_seed_same_numbers_whatever_the_chunk",)),
    Bug("batch norm statistics shared across the tasks of a batch (ProtoNets)",
        "mlkit/protonet.py", "return self.model.embed_tasks(x)",
        "return self.model(x.flatten(0, 1)).view(*x.shape[:2], -1)",
        ("tests/test_protonet.py::test_tasks_do_not_influence_each_other",)),
    Bug("the first block's batch norm uses the unbiased variance",
        "mlkit/models.py", "cov = centred.T @ centred / len(u)",
        "cov = centred.T @ centred / (len(u) - 1)",
        ("tests/test_models.py::test_conv_bn_equals_conv_then_batch_norm_values_and_gradients",)),
    Bug("an lr given to fine_tune is ignored",
        "mlkit/maml.py", "size = self.step_size(name) if inner_lr is None else inner_lr",
        "size = self.step_size(name)",
        ("tests/test_learner.py::test_inner_lr_overrides_every_step_size",)),
    Bug("a resumed run restarts the task sampler from its seed",
        "mlkit/train.py", "        generator.set_state(history.sampler_state)",
        "        pass",
        ("tests/test_train.py::test_continued_run_equals_an_uninterrupted_one",)),
    Bug("the two-weight toy's gradient has the wrong sign for the amplitude",
        "mlkit/toy.py", "torch.stack([(2 * r * s).mean((1, 2))", "torch.stack([(-2 * r * s).mean((1, 2))",
        ("tests/test_toy.py::test_gradient_matches_autograd",)),
    Bug("the leak filter of the glyph split finds nothing",
        "mlkit/tools/glyphs.py", 'return np.einsum("sbd,cd->scb", background, f).max(axis=(0, 2))',
        "return np.zeros(len(candidates))",
        ("tests/test_glyphs.py::test_a_planted_leak_is_caught",)),
]
