"""The cross-domain and transfer methods: shared parts checked against hand-computed values,
each method's own rules (masks, protocols, weight copying), and one step of each on tiny nets."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods import METHODS, Batch, Method
from benchmark.methods.base import DomainBatch
from benchmark.methods.dine import (
    adaptive_label_smoothing,
    information_maximisation_loss,
    memory_target,
)
from benchmark.methods.ensemble_kd import ensemble_distribution
from benchmark.methods.kd3a import confidence_gate, consensus_focus, knowledge_vote
from benchmark.methods.mean_teacher import (
    class_balance_loss,
    confidence_mask,
    self_ensembling_loss,
)
from benchmark.methods.mme import cosine_logits, minimax_entropy_loss
from benchmark.methods.mt_mtda import progressive_beta
from benchmark.methods.parts import (
    EmaCopy,
    coral_loss,
    dann_lambda,
    gaussian_mmd,
    reverse_gradient,
)
from benchmark.methods.pseudo_label_kd import pseudo_label_loss
from benchmark.methods.teachers import Member, TeacherAccessError, Teachers, freeze
from benchmark.models.features import forward_outputs
from benchmark.suite.config import Suite
from benchmark.suite.expansion import expand
from benchmark.suite.protocols import grants, unmet

NEED_TARGET_IMAGES = [
    "target_oracle",
    "kd_target",
    "adversarial_kd",
    "mmd_kd",
    "coral_kd",
    "mean_teacher",
    "pseudo_label_kd",
    "dine",
]
NEED_TARGET_LABELS = ["finetune", "feature_transfer", "mme"]
ALL_OURS = NEED_TARGET_IMAGES + NEED_TARGET_LABELS


def tiny_batch(labelled: bool = True, progress: float = 0.3) -> Batch:
    gen = torch.Generator().manual_seed(0)
    return Batch.single(
        source_images=torch.randn(4, 3, 32, 32, generator=gen).clamp(-1, 1),
        source_labels=torch.randint(0, 10, (4,), generator=gen),
        target_images=torch.randn(4, 3, 32, 32, generator=gen).clamp(-1, 1),
        target_labels=torch.randint(0, 10, (4,), generator=gen) if labelled else None,
        progress=progress,
    )


def teachers_of(model: nn.Module, access: str = "features") -> Teachers:
    return Teachers([Member("source", freeze(model))], 10, access)


def network(name: str, seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=10, **kwargs)


def make(name: str, **params) -> Method:
    return METHODS.get(name)(name, **params)


# --- shared parts -------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_flips_and_scales_backward():
    features = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    weights = torch.tensor([0.5, 1.0, -4.0])
    reversed_features = reverse_gradient(features, 0.25)
    assert torch.equal(reversed_features, features)
    (reversed_features * weights).sum().backward()
    assert torch.allclose(features.grad, torch.tensor([-0.125, -0.25, 1.0]))


def test_dann_ramp_at_start_middle_and_end():
    # 2 / (1 + exp(-10 p)) - 1 = tanh(5 p)
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(0.9866142981514303, abs=1e-12)
    assert dann_lambda(1.0) == pytest.approx(0.9999092042625951, abs=1e-12)


def test_ema_copy_averages_parameters_and_leaves_the_original_alone():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    ema = EmaCopy(model, decay=0.9)
    assert not any(p.requires_grad for p in ema.parameters())
    nn.init.constant_(model.weight, 3.0)
    ema.update(model)  # 0.9 * 1 + 0.1 * 3
    assert float(ema.model.weight) == pytest.approx(1.2)
    ema.update(model)  # 0.9 * 1.2 + 0.1 * 3
    assert float(ema.model.weight) == pytest.approx(1.38)
    assert float(model.weight.detach()) == 3.0


def test_ema_copy_keeps_its_own_batchnorm_statistics():
    model = nn.BatchNorm1d(2)
    ema = EmaCopy(model, decay=0.5)
    model.running_mean.fill_(4.0)
    ema.update(model)
    assert torch.equal(ema.model.running_mean, torch.zeros(2))


def test_mmd_is_zero_for_identical_samples_and_grows_with_the_shift():
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(16, 4, generator=gen)
    same = gaussian_mmd(source, source.clone())
    near = gaussian_mmd(source, torch.randn(16, 4, generator=gen))
    far = gaussian_mmd(source, torch.randn(16, 4, generator=gen) + 3.0)
    assert abs(float(same)) < 1e-6
    assert float(far) > float(near) > 0


def test_mmd_worked_by_hand_in_one_dimension():
    # points 0 and 1: squared distance 1, mean off-diagonal distance 1 = base bandwidth.
    # one kernel: K_ss = K_tt = 1, K_st = e^-1 -> 2 - 2/e
    one = gaussian_mmd(torch.tensor([[0.0]]), torch.tensor([[1.0]]), kernel_num=1)
    assert float(one) == pytest.approx(2 - 2 / math.e, abs=1e-6)
    # five kernels, bandwidths 1/4 .. 4: K_ss = K_tt = 5, K_st = sum exp(-1/b)
    cross = sum(math.exp(-1 / b) for b in (0.25, 0.5, 1.0, 2.0, 4.0))
    five = gaussian_mmd(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert float(five) == pytest.approx(10 - 2 * cross, abs=1e-5)


def test_coral_worked_by_hand_for_2x2_covariances():
    # source: square corners, C_s = diag(4/3, 4/3); target: (0,0), (1,1), C_t = [[.5,.5],[.5,.5]]
    # ||C_s - C_t||^2 = 2 (5/6)^2 + 2 (1/2)^2 = 17/9; / (4 d^2) = 17/144
    source = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert float(coral_loss(source, target)) == pytest.approx(17 / 144, abs=1e-6)
    assert float(coral_loss(source, source + 5.0)) == pytest.approx(0.0, abs=1e-6)


# --- the methods' own rules ---------------------------------------------------------------


def test_mean_teacher_mask_and_consistency_worked_by_hand():
    teacher = torch.tensor([[0.97, 0.03], [0.6, 0.4]])
    student = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    mask = confidence_mask(teacher, 0.968)
    assert mask.tolist() == [1.0, 0.0]
    # row 0: (0.47^2 + 0.47^2) / 2 = 0.2209; row 1 masked; mean over both rows
    assert float(self_ensembling_loss(student, teacher, mask)) == pytest.approx(0.11045)
    # class balance: BCE of each class's mean probability against 1/K, times K, times the
    # confident fraction. Uniform predictions: 2 ln 2. Here the mean is (1/4, 3/4), both
    # classes give -(ln(1/4) + ln(3/4)) / 2, times K = 2, times the mask mean 1/2.
    uniform = class_balance_loss(torch.full((2, 2), 0.5), torch.ones(2))
    assert float(uniform) == pytest.approx(2 * math.log(2), abs=1e-5)
    expected = -(math.log(0.25) + math.log(0.75)) / 2
    assert float(class_balance_loss(student, mask)) == pytest.approx(expected, abs=1e-5)


def test_mean_teacher_pure_french_variant_runs_without_the_teacher():
    student = network("lenet", 0)
    method = make("mean_teacher", kd_weight=0.0)
    batch = tiny_batch()
    initial_bias = student.fc.bias.detach().clone()
    method.setup(student, None, batch)
    nn.init.constant_(student.fc.bias, 1.0)
    terms = method.losses(student, None, batch)
    assert set(terms) == {"ce", "consistency", "class_balance"}
    # the EMA copy moved 1% of the way to the student's new bias, inside `losses`
    assert torch.allclose(method.ema.model.fc.bias, 0.99 * initial_bias + 0.01)


def test_pseudo_labels_count_only_confident_teacher_predictions():
    teacher = torch.tensor([[5.0, 0.0], [0.5, 0.0]])  # softmax 0.993 and 0.622
    student = torch.zeros(2, 2)  # cross-entropy ln 2 for either label
    assert float(pseudo_label_loss(student, teacher, 0.9)) == pytest.approx(math.log(2) / 2)
    assert float(pseudo_label_loss(student, teacher, 0.999)) == 0.0


def test_dine_label_smoothing_memory_and_information_maximisation_by_hand():
    probs = torch.tensor([[0.3, 0.5, 0.2]])
    assert torch.allclose(adaptive_label_smoothing(probs, 1), torch.tensor([[0.25, 0.5, 0.25]]))
    assert torch.allclose(adaptive_label_smoothing(probs, 3), probs)
    teacher, student = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.equal(memory_target(teacher, student, 0, 0.6), teacher)
    assert torch.allclose(memory_target(teacher, student, 2, 0.6), torch.tensor([[0.36, 0.64]]))
    # confident and diverse: mean entropy 0, entropy of the mean ln 2
    one_hot = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(information_maximisation_loss(one_hot)) == pytest.approx(-math.log(2))


def test_dine_runs_on_a_black_box_that_answers_probabilities_only():
    black_box = teachers_of(network("lenet", 1), access="probabilities")
    student = network("lenet", 0)
    method = make("dine")
    batch = tiny_batch()
    method.setup(student, black_box, batch)
    terms = method.losses(student, black_box, batch)
    assert set(terms) == {"distill", "im", "mix"}
    sum(terms.values()).backward()


def test_a_probabilities_only_teacher_refuses_features_logits_and_weights():
    black_box = teachers_of(network("lenet", 1), access="probabilities")
    images = tiny_batch().source_images
    probabilities = black_box.probabilities(images)
    assert torch.allclose(probabilities.sum(1), torch.ones(4))
    for read in (
        lambda: black_box.outputs(images),
        lambda: black_box(images),
        lambda: black_box.module(),
        lambda: black_box.forward_intermediates(images),
    ):
        with pytest.raises(TeacherAccessError):
            read()
    assert not any(isinstance(v, nn.Module) for v in vars(black_box).values())
    with pytest.raises(TeacherAccessError, match="grants the teacher's probabilities only"):
        make("fitnet").setup(network("lenet", 0), black_box, tiny_batch())
    logits_only = teachers_of(network("lenet", 1), access="logits")
    assert logits_only(images).shape == (4, 10)
    with pytest.raises(TeacherAccessError, match="may not read its features"):
        logits_only.outputs(images)


def test_finetune_copies_every_teacher_tensor_when_architectures_match():
    teacher, student = freeze(network("lenet", 1)), network("lenet", 2)
    method = make("finetune")
    method.setup(student, teachers_of(teacher), tiny_batch())
    assert len(method.copied_tensors) == len(student.state_dict())
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(student.state_dict()[name], tensor), name
    assert all(p.requires_grad for p in student.parameters())


def test_finetune_copies_what_two_architectures_share_and_says_so():
    teacher, student = freeze(network("lenet", 1)), network("dtn", 2)
    method = make("finetune")
    with pytest.warns(UserWarning, match=r"copied \d+ of \d+"):
        method.setup(student, teachers_of(teacher), tiny_batch())
    assert "fc.weight" in method.copied_tensors and "stages.0.0.weight" not in method.copied_tensors
    assert torch.equal(student.fc.weight, teacher.fc.weight)


def test_feature_transfer_trains_only_the_head_of_a_teacher_copy():
    teacher, student = freeze(network("lenet", 1)), network("lenet", 2)
    method = make("feature_transfer")
    method.setup(student, teachers_of(teacher), tiny_batch())
    trainable = {name for name, p in student.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert torch.equal(student.stages[0][0].weight, teacher.stages[0][0].weight)
    sum(method.losses(student, teachers_of(teacher), tiny_batch()).values()).backward()
    assert student.fc.weight.grad is not None
    with pytest.raises(XdkdError, match="teacher's architecture"):
        make("feature_transfer").setup(network("dtn", 2), teachers_of(teacher), tiny_batch())


def test_target_oracle_needs_target_labels():
    oracle = METHODS.get("target_oracle")
    assert oracle.needs.oracle and oracle.needs.teacher is None
    with pytest.raises(XdkdError, match="needs target labels"):
        make("target_oracle").losses(network("lenet", 0), None, tiny_batch(labelled=False))


def granted(protocol: str, **params) -> object:
    return grants(protocol, {"teacher_access": "features", **params}, 1, 1, 0)


@pytest.mark.parametrize("name", NEED_TARGET_IMAGES)
def test_methods_needing_target_images_refuse_zero_shot_and_in_domain(name: str):
    needs = METHODS.get(name).needs
    assert "target images" in unmet(needs, granted("zero_shot"))
    assert "target images" in unmet(needs, granted("in_domain"))
    assert unmet(needs, granted("uda")) is None


@pytest.mark.parametrize("name", NEED_TARGET_LABELS)
def test_transfer_methods_need_target_labels_few_shot_or_all(name: str):
    needs = METHODS.get(name).needs
    assert "target labels" in unmet(needs, granted("uda"))
    assert unmet(needs, granted("labelled_target")) is None
    assert unmet(needs, granted("few_shot", shots=1)) is None


def test_the_harness_refuses_a_zero_shot_suite_with_a_target_image_method():
    suite = Suite(
        name="zero",
        pairs=[{"source": "mnist", "target": "mnistm"}],
        teachers=["lenet"],
        students=["lenet"],
        methods=["mmd_kd"],
        protocol="zero_shot",
    )
    with pytest.raises(XdkdError, match="method 'mmd_kd' fits no setting of this suite"):
        expand(suite)


# --- one step of each method --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_OURS)
def test_one_step_gives_finite_named_terms_and_gradients(name: str):
    teacher, student = teachers_of(network("lenet", 1)), network("lenet", 2)
    method = make(name)
    batch = tiny_batch()
    method.setup(student, teacher, batch)
    terms = method.losses(student, teacher, batch)
    assert terms and all(torch.isfinite(value) and value.ndim == 0 for value in terms.values())
    sum(terms.values()).backward()
    trainable = [p for p in [*student.parameters(), *method.parameters()] if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


def test_adversarial_kd_sizes_its_discriminator_from_any_student():
    teacher = teachers_of(network("lenet", 1))
    student = network("vit_tiny_patch16_224", 2, img_size=32, patch_size=4, depth=2)
    method = make("adversarial_kd")
    batch = tiny_batch(progress=0.5)
    method.setup(student, teacher, batch)
    assert method.discriminator[0].in_features == student.num_features
    sum(method.losses(student, teacher, batch).values()).backward()
    assert method.discriminator[0].weight.grad is not None


# --- multi-teacher methods and MME -------------------------------------------------------


def task_teachers(access: str = "features") -> Teachers:
    """Two teachers of five classes each, on interleaved student columns."""
    members = [
        Member("even", freeze(timm.create_model("lenet", num_classes=5)), [0, 2, 4, 6, 8]),
        Member("odd", freeze(timm.create_model("lenet", num_classes=5)), [1, 3, 5, 7, 9]),
    ]
    return Teachers(members, 10, access)


def two_target_batch(progress: float = 0.5) -> Batch:
    gen = torch.Generator().manual_seed(0)

    def images() -> torch.Tensor:
        return torch.randn(4, 3, 32, 32, generator=gen).clamp(-1, 1)

    source = DomainBatch("source", images(), torch.randint(0, 10, (4,), generator=gen))
    return Batch([source], [DomainBatch("t0", images()), DomainBatch("t1", images())], [], progress)


# three teachers, three classes, gate 0.9: image 0: teachers 0 and 1 confident on class 0,
# teacher 2 unsure; image 1: teacher 1 confident on class 1, teacher 2 on class 2 (a tie, the
# larger top probability, 0.98, wins); image 2: nobody confident.
VOTES = torch.tensor(
    [
        [[0.95, 0.03, 0.02], [0.50, 0.30, 0.20], [0.40, 0.30, 0.30]],
        [[0.92, 0.05, 0.03], [0.02, 0.96, 0.02], [0.30, 0.40, 0.30]],
        [[0.10, 0.85, 0.05], [0.01, 0.01, 0.98], [0.30, 0.30, 0.40]],
    ],
    dtype=torch.float64,
)


def test_knowledge_vote_consensus_and_weights_on_three_teachers_by_hand():
    knowledge, weight = knowledge_vote(VOTES, 0.9)
    # image 0: two of three agree on class 0, their mean vector; image 1: class 2 alone
    assert weight.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert knowledge[0].tolist() == pytest.approx([0.935, 0.04, 0.025])
    assert knowledge[1].tolist() == pytest.approx([0.01, 0.01, 0.98])
    assert knowledge[2].tolist() == pytest.approx(VOTES[:, 2].mean(0).tolist())  # weight 0
    assert knowledge_vote(VOTES, 0.99)[1].tolist() == [0.0, 0.0, 0.0]


def test_consensus_focus_is_the_leave_one_out_drop_in_quality():
    # quality (summed weights) 2/3 + 1/3 = 1. Without teacher 0 or 1: 1/3 + 1/3 (drop 1/3
    # each); without teacher 2: 2/3 + 1/3 (teacher 1 takes image 1 over; drop 0)
    focus = consensus_focus(VOTES, 0.9)
    assert focus.tolist() == pytest.approx([0.5, 0.5, 0.0])
    # with those weights teacher 1 alone decides image 1, teachers 0 and 1 carry image 0
    knowledge, weight = knowledge_vote(VOTES, 0.9, focus)
    assert weight.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert int(knowledge[1].argmax()) == 1
    # nobody confident: no quality to share, the weights stay uniform
    assert consensus_focus(VOTES, 0.99).tolist() == pytest.approx([1 / 3] * 3)


def test_kd3a_gate_rises_and_its_mixup_draws_replay_from_the_global_generator():
    assert [confidence_gate(p, 0.9, 0.95) for p in (0.0, 0.5, 1.0)] == pytest.approx(
        [0.9, 0.925, 0.95]
    )
    sources = [Member(f"s{i}", freeze(network("lenet", i + 1))) for i in range(3)]
    black_boxes = Teachers(sources, 10, "probabilities")
    student, batch = network("lenet", 0), tiny_batch(labelled=False)
    method = make("kd3a", gate_start=0.0, gate_end=0.0)  # every teacher votes
    method.setup(student, black_boxes, batch)
    student.eval()  # no dropout: only the mixup draws may differ

    def vote_term(seed: int) -> float:
        torch.manual_seed(seed)
        return float(method.losses(student, black_boxes, batch)["knowledge_vote"].detach())

    assert vote_term(5) == vote_term(5) != vote_term(6)


def test_ensemble_of_task_teachers_places_each_in_its_columns():
    teachers = task_teachers("logits")
    images = tiny_batch().source_images
    members = teachers.member_logits(images)
    placed = teachers.place(members, float("-inf"))
    assert torch.equal(placed[0][:, [0, 2, 4, 6, 8]], members["even"])
    assert torch.isinf(placed[0][:, [1, 3, 5, 7, 9]]).all()
    uniform = ensemble_distribution(placed, 4.0, "uniform")
    # each teacher's softened distribution keeps half the mass, in its own columns
    assert uniform[:, 0::2].sum(1).tolist() == pytest.approx([0.5] * 4)
    even = torch.softmax(members["even"] / 4.0, dim=1)
    assert torch.allclose(uniform[:, 0::2], even / 2)
    # confidence weighting: mass in proportion to each teacher's top probability
    odd = torch.softmax(members["odd"] / 4.0, dim=1)
    share = even.max(1).values / (even.max(1).values + odd.max(1).values)
    confident = ensemble_distribution(placed, 4.0, "confidence")
    assert torch.allclose(confident[:, 0::2].sum(1), share)
    with pytest.raises(XdkdError, match="weighting must be one of"):
        make("ensemble_kd", weighting="softmax")


def test_multi_teacher_methods_refuse_settings_without_their_teachers_or_targets():
    one_teacher = granted("uda")
    assert "several teachers" in unmet(METHODS.get("ensemble_kd").needs, one_teacher)
    assert "several teachers" in unmet(METHODS.get("kd3a").needs, one_teacher)
    assert "several target domains" in unmet(METHODS.get("mt_mtda").needs, one_teacher)
    assert "one teacher per task" in unmet(METHODS.get("amalgamation").needs, one_teacher)
    black_box = grants("multi_source", {"teacher_access": "probabilities"}, 2, 1, 0)
    assert unmet(METHODS.get("kd3a").needs, black_box) is None
    assert "logits" in unmet(METHODS.get("ensemble_kd").needs, black_box)
    several = grants("multi_target", {"teacher_access": "features"}, 1, 2, 0)
    assert unmet(METHODS.get("mt_mtda").needs, several) is None


def test_mt_mtda_alternates_its_target_teachers_step_by_step():
    assert [progressive_beta(p, 0.1, 0.9) for p in (0.0, 0.5, 1.0)] == pytest.approx(
        [0.1, 0.3, 0.9]
    )
    source_teacher = network("lenet", 1)
    teacher, student, batch = teachers_of(source_teacher), network("lenet", 2), two_target_batch()
    method = make("mt_mtda")
    method.setup(student, teacher, batch)
    assert len(method.target_teachers) == len(method.discriminators) == 2
    for step, expected in enumerate([0, 1, 0]):
        assert method.current_target() == expected
        terms = method.losses(student, teacher, batch)
        assert set(terms) == {"distill", "teacher_ce", "teacher_domain"}
        sum(terms.values()).backward()
        for index, adapted in enumerate(method.target_teachers):
            got = any(p.grad is not None for p in adapted.parameters())
            assert got == (index == expected), f"step {step}: teacher {index}"
        for param in [*method.parameters(), *student.parameters()]:
            param.grad = None
        assert int(method.state_dict()["step"]) == step + 1  # checkpointed
    # the copies train; the source teacher stays frozen and untouched
    assert all(p.requires_grad for p in method.target_teachers[0].parameters())
    assert not any(p.requires_grad or p.grad is not None for p in source_teacher.parameters())


def test_amalgamation_distils_the_placed_logits_and_sizes_a_coder_per_teacher():
    teachers, student, batch = task_teachers(), network("lenet", 0), tiny_batch()
    images = batch.all_images()
    outputs = {name: teachers.outputs(images, name).logits for name in teachers.names}
    assert torch.equal(teachers.combine(outputs), teachers(images))
    method = make("amalgamation")
    method.setup(student, teachers, batch)
    pooled = teachers.outputs(images, "even").pooled.shape[1]
    assert [e.in_features for e in method.teacher_encoders] == [pooled, pooled]
    assert [d.out_features for d in method.teacher_decoders] == [pooled, pooled]
    assert method.student_encoder.out_features == 128
    terms = method.losses(student, teachers, batch)
    assert set(terms) == {"kd", "mmd", "reconstruction", "ce"}
    assert float(terms["ce"].detach()) == 0.0  # CFL uses no labels by default
    sum(terms.values()).backward()
    assert method.teacher_decoders[1].weight.grad is not None
    assert method.student_encoder.weight.grad is not None


def test_mme_cosine_classifier_and_minimax_gradients_by_hand():
    # cos([3, 4], [1, 0]) = 0.6, cos([3, 4], [0, 2]) = 0.8; divided by T = 0.5
    logits = cosine_logits(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), 0.5)
    assert logits.tolist()[0] == pytest.approx([1.2, 1.6])
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 4, generator=gen, requires_grad=True)
    prototypes = torch.randn(3, 4, generator=gen, requires_grad=True)
    minimax_entropy_loss(reverse_gradient(features, 1.0), prototypes, 1.0, 0.1).backward()

    def entropy(f: torch.Tensor, w: torch.Tensor) -> float:
        return -float(minimax_entropy_loss(f, w, 1.0, 1.0))

    with torch.no_grad():
        before = entropy(features, prototypes)
        # a descent step raises the entropy through the classifier, lowers it through features
        assert entropy(features, prototypes - 0.1 * prototypes.grad) > before
        assert entropy(features - 0.1 * features.grad, prototypes) < before


def test_mme_renormalises_the_head_so_the_plain_forward_predicts_like_the_cosine_classifier():
    student, batch = network("lenet", 0), tiny_batch()
    with torch.no_grad():
        student.fc.weight.mul_(torch.arange(1.0, 11.0)[:, None])  # rows of unequal norms
        student.fc.bias.fill_(0.5)
    terms = make("mme").losses(student, None, batch)
    assert set(terms) == {"ce", "entropy"}
    assert torch.allclose(student.fc.weight.norm(dim=1), torch.ones(10))
    assert torch.equal(student.fc.bias, torch.zeros(10))
    with torch.no_grad():
        out = forward_outputs(student, batch.target_images)
        cosine = cosine_logits(out.pooled, student.fc.weight, 0.05)
    assert torch.equal(out.logits.argmax(1), cosine.argmax(1))
