"""The options against degenerate RE training each change what they say, and nothing when off."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_text, tiny_vision
from rekd_core.config import parse_config
from rekd_core.data.features import Inputs, TextFeaturizer, VisionFeaturizer
from rekd_core.model.runmodel import build_model
from rekd_core.store.checkpoint import load_checkpoint
from rekd_core.store.runstore import RunStore
from rekd_core.train.init_from import InitMismatch
from rekd_core.train.optim import build_optimizer
from rekd_core.train.tasks import ClsTask, ReTask
from rekd_core.train.trainer import Trainer, train


def _trainer(cfg: dict, tmp_path) -> Trainer:
    parsed = parse_config(cfg)
    t = Trainer(parsed, RunStore.create(tmp_path / "run", parsed))
    t._setup()
    return t


def _weights(run, which: str = "last") -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "checkpoints" / f"{which}.safetensors")
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


@pytest.mark.parametrize("dropped", ["mask", "pad"])
def test_a_dropped_token_reads_as_the_fill_token(dropped):
    """Dropping position j with dropped_token=mask gives exactly what the encoder computes when
    position j *is* the [MASK] token; the paper's zeros give something else."""
    cfg = parse_config({**tiny_text("re"), "model": {"student": tiny_text()["model"]["student"],
                                                     "dropped_token": dropped}})
    feat = TextFeaturizer(cfg.data, count_special=False)
    torch.manual_seed(0)
    model = build_model(cfg, cfg.model.student, num_classes=2, featurizer=feat, with_generator=False).eval()
    enc = feat.encode(["a gorgeous and witty film"])
    ids, att = enc["ids"][:, :8], enc["attention"][:, :8]
    keep = torch.ones(1, 8)
    keep[0, 3] = 0
    fill = feat.fill_token_id(dropped)
    replaced = ids.clone()
    replaced[0, 3] = fill
    h_dropped, _ = model.predictor.encode(ids, att, keep)
    h_replaced, _ = model.predictor.encode(replaced, att, None)
    assert torch.allclose(h_dropped, h_replaced, atol=1e-6)
    model.predictor.fill_token_id = None  # the paper: a zeroed word embedding
    h_zero, _ = model.predictor.encode(ids, att, keep)
    # a BERT built from scratch keeps [PAD]'s embedding at zero (padding_idx): there pad == zero
    assert torch.allclose(h_zero, h_replaced, atol=1e-3) == (dropped == "pad")


def test_generator_lr_puts_the_generator_in_its_own_group(tmp_path):
    cfg = tiny_vision("re")
    cfg["optim"] = {"lr": 1e-3, "head_lr": 2e-3, "generator_lr": 5e-4}
    t = _trainer(cfg, tmp_path)
    groups = t.opt.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 2e-3, 5e-4]
    gen = {id(p) for p in [*t.model.generator.parameters(), *t.model.selector.parameters()]}
    assert {id(p) for p in groups[2]["params"]} == gen
    assert not gen & {id(p) for g in groups[:2] for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(t.model.parameters()))
    off = parse_config(tiny_vision("re"))  # unset: the two groups as before
    assert len(build_optimizer(t.model, off, torch.device("cpu")).param_groups) == 2


def test_selector_lr_gives_the_selector_head_a_group_of_its_own(tmp_path):
    cfg = tiny_vision("re")
    cfg["optim"] = {"lr": 1e-3, "head_lr": 2e-3, "generator_lr": 1e-5, "selector_lr": 3e-3}
    t = _trainer(cfg, tmp_path)
    groups = t.opt.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 2e-3, 1e-5, 3e-3]
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in t.model.generator.parameters()}
    assert {id(p) for p in groups[3]["params"]} == {id(p) for p in t.model.selector.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(t.model.parameters()))
    alone = tiny_vision("re")
    alone["optim"] = {"lr": 1e-3, "selector_lr": 3e-3}  # the generator's backbone stays at lr
    assert [g["lr"] for g in _trainer(alone, tmp_path / "alone").opt.param_groups] == [1e-3, 1e-3, 1e-3, 3e-3]


def test_schedule_warmups(tmp_path):
    cfg = tiny_vision("re", max_steps=100)
    cfg["loss"] = {"p_target": 0.2}
    cfg["schedule"] = {"tau0": 5.0, "tau_final": 0.1, "tau_update_every": 1, "full_input_steps": 20,
                       "sparsity_warmup_steps": 40}
    t = _trainer(cfg, tmp_path)
    assert t.tau(0) == t.tau(20) == 5.0 and t.tau(99) == pytest.approx(0.1)  # tau anneals after the warm-up
    assert [t.p_target(s) for s in (0, 20, 40, 60, 99)] == pytest.approx([1.0, 1.0, 0.6, 0.2, 0.2])
    assert isinstance(t._task_at(19), ClsTask) and isinstance(t._task_at(20), ReTask)
    assert t._task_at(40).p_target == pytest.approx(0.6)
    plain = _trainer(tiny_vision("re", max_steps=100), tmp_path / "plain")
    assert plain.p_target(0) == plain.cfg.loss.p_target and plain.tau(0) == 5.0


def test_full_input_steps_train_the_predictor_alone_then_seed_the_generator(tmp_path):
    cfg = tiny_vision("re", max_steps=5, checkpoint_every=4, eval_every=5, log_every=1)
    cfg["schedule"] = {"tau_update_every": 2, "full_input_steps": 4}
    cfg["optim"] = {"lr": 3e-3, "generator_lr": 1e-30}  # the generator all but frozen after the copy
    run = tmp_path / "run"
    train(parse_config(cfg), run)
    logs = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    logs = [e for e in logs if e["type"] == "log"]
    assert ["selected" in e for e in logs] == [False] * 4 + [True]  # no mask while the input is whole
    at_switch, final = _weights(run, "previous"), _weights(run, "last")  # steps 4 and 5
    for name, value in at_switch.items():
        if name.startswith("predictor."):
            assert torch.equal(final["generator." + name.removeprefix("predictor.")], value), name


def test_the_selector_head_starts_from_zero_after_the_warm_up_only_under_topk(tmp_path):
    for selection, zeroed in (("argmax", False), ("topk", True)):
        cfg = tiny_vision("re")
        cfg["model"]["selection"] = selection
        cfg["schedule"] = {"full_input_steps": 4}
        t = _trainer(cfg, tmp_path / selection)
        t._generator_from_predictor()
        head = [t.model.selector.weight, t.model.selector.bias]
        # argmax: a zero head ties every position, and a tie keeps nothing at evaluation
        assert all(bool((w == 0).all()) for w in head) == zeroed, selection


def test_init_from_starts_predictor_and_generator_from_a_cls_run(tmp_path):
    cls_run = tmp_path / "cls"
    train(parse_config(tiny_vision("cls")), cls_run)
    cfg = tiny_vision("re")
    cfg["model"]["init_from"] = str(cls_run)
    t = _trainer(cfg, tmp_path / "re")
    src = _weights(cls_run, "best")
    own = t.model.state_dict()
    for name, value in src.items():
        assert torch.equal(own[name], value), name
        if name.startswith("predictor."):
            assert torch.equal(own["generator." + name.removeprefix("predictor.")], value), name

    other = tiny_vision("re")
    other["model"]["student"] = {**other["model"]["student"], "embed_dim": 16}
    other["model"]["init_from"] = str(cls_run)
    with pytest.raises(InitMismatch, match="another student architecture"):
        _trainer(other, tmp_path / "other")
    with pytest.raises(InitMismatch, match="holds no checkpoint"):
        _trainer({**cfg, "model": {**cfg["model"], "init_from": str(tmp_path / "nowhere")}}, tmp_path / "none")


def test_a_cnn_student_scores_the_same_grid_and_distils_from_a_vit_teacher(tmp_path, teacher_runs):
    """Cross-architecture: a CNN student over the ViT teacher's 4 x 4 grid of 7 px patches."""
    cnn = {"kind": "cnn", "img_size": 28, "patch_size": 7, "in_chans": 1, "channels": 8, "depth": 2}
    cfg = tiny_vision("rekd")
    cfg["model"] = {"student": cnn, "teacher_run": str(teacher_runs["vision"])}
    res = train(parse_config(cfg), tmp_path / "cnn")
    assert res["state"] == "completed"
    events = [json.loads(x) for x in (tmp_path / "cnn" / "events.jsonl").read_text().splitlines()]
    ev = [e for e in events if e["type"] == "eval"][-1]
    assert 0 <= ev["iou"] <= 1 and ev["input_dependence"]["n"] == 64
    parsed = parse_config(cfg)
    model = build_model(parsed, parsed.model.student, num_classes=10, featurizer=VisionFeaturizer(parsed.model.student),
                        with_generator=True)
    x = torch.randn(2, 1, 28, 28)
    states, pooled = model.predictor.encode(x, None, None)
    assert states.shape == (2, 16, model.predictor.hidden_size) and pooled.shape == (2, model.predictor.hidden_size)
    keep = torch.zeros(2, 16)
    keep[:, 5] = 1  # only patch (1, 1): rows 7-13, columns 7-13 of the image reach the network
    masked = x.clone()
    masked[:, :, :7] = 0
    masked[:, :, 14:] = 0
    masked[:, :, :, :7] = 0
    masked[:, :, :, 14:] = 0
    model.eval()
    assert torch.allclose(model.predictor.encode(x, None, keep)[1], model.predictor.encode(masked, None, None)[1])
    bad = tiny_vision("rekd")
    bad["model"] = {"student": {**cnn, "patch_size": 14}, "teacher_run": str(teacher_runs["vision"])}
    with pytest.raises(Exception, match="same patch grid"):
        train(parse_config(bad), tmp_path / "bad")


def test_topk_mask_keeps_exactly_its_share_of_each_inputs_positions():
    from rekd_core.model.masks import topk_mask

    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.2, 0.3], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    selectable = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]).float()
    m = topk_mask(scores, selectable, 0.5)
    assert m.tolist() == [[0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]  # 3 of 6; 2 of 4, ties to the earlier
    assert topk_mask(scores, selectable, 0.01).sum(1).tolist() == [1, 1]  # never empty
    assert topk_mask(-scores, selectable, 1.0)[1, 4:].sum() == 0  # never a padding position


def test_topk_selection_in_training_and_evaluation(tmp_path):
    cfg = tiny_vision("re")
    cfg["model"]["selection"] = "topk"
    cfg["loss"] = {"p_target": 0.25}
    run = tmp_path / "run"
    train(parse_config(cfg), run)
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert all(e["selected"]["mean"] == e["selected"]["min"] == 0.25 for e in events if e["type"] in ("log", "eval"))
    snap = sorted((run / "examples").glob("step-*.json"))[-1]
    assert all(sum(m) == 4 for m in json.loads(snap.read_text())["student"]["mask"])  # 4 of the 16 patches


def test_partial_input_warmup_keeps_its_share_of_positions():
    from rekd_core.train.tasks import PartialInputTask

    seen = {}

    class Spy:
        def predict(self, inputs, mask):
            seen["mask"] = mask
            return torch.zeros(inputs.x.shape[0], 2, requires_grad=True)

    from rekd_core.data.features import Inputs

    inputs = Inputs(x=torch.zeros(64, 1), attention=None, selectable=torch.ones(64, 100), keep=None)
    task = PartialInputTask(parse_config(tiny_vision("re")), keep=0.3)
    task.step(Spy(), inputs, torch.zeros(64, dtype=torch.long), torch.arange(64), 1.0,
              torch.Generator().manual_seed(0))
    assert abs(float(seen["mask"].mean()) - 0.3) < 0.02 and set(seen["mask"].unique().tolist()) == {0.0, 1.0}


def test_mean_pooling_and_keep_layers():
    from rekd_core.config import TextBackbone
    from rekd_core.model.backbones import BertBackbone

    spec = TextBackbone(pretrained="minilm-l6", keep_layers=2, pooling="mean")
    b = BertBackbone(spec, vocab_size=30522, max_len=16).eval()
    assert len(b.bert.encoder.layer) == 2 and b.bert.config.num_hidden_layers == 2
    ids = torch.tensor([[101, 2023, 3185, 102, 0, 0]])
    att = torch.tensor([[1, 1, 1, 1, 0, 0]])
    h, pooled = b.encode(ids, att, None)
    assert torch.allclose(pooled, h[:, :4].mean(1), atol=1e-6)  # the real tokens only
    with pytest.raises(ValueError, match="has only 6 layers"):
        BertBackbone(TextBackbone(pretrained="minilm-l6", keep_layers=7), vocab_size=30522, max_len=16)


def test_span_means_and_noise_are_shared_by_each_run_of_tokens():
    from rekd_core.model.masks import span_mean, span_noise

    z = torch.randn(2, 7, 2, requires_grad=True)
    m = span_mean(z, 3)
    assert torch.allclose(m[:, :3], z[:, :3].mean(1, keepdim=True).expand(-1, 3, -1))
    assert torch.allclose(m[:, 6], z[:, 6])  # the short last run is its own mean, not diluted by padding
    m[0, 0, 1].backward()  # each token of a run gets an equal share of the run's gradient
    assert torch.allclose(z.grad[0, :3, 1], torch.full((3,), 1 / 3)) and z.grad[0, 3:].abs().sum() == 0
    assert span_mean(z, 1) is z
    g = span_noise((2, 7, 2), 3, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert torch.equal(g[:, 0], g[:, 2]) and not torch.equal(g[:, 2], g[:, 3])


@pytest.mark.parametrize("selection", ["argmax", "topk"])
def test_a_text_model_with_span_keeps_and_samples_runs_whole(selection):
    cfg = tiny_text("re")
    cfg["model"] = {"student": cfg["model"]["student"], "span": 4, "selection": selection}
    cfg["loss"] = {"p_target": 0.5}
    parsed = parse_config(cfg)
    feat = TextFeaturizer(parsed.data, count_special=False)
    torch.manual_seed(0)
    model = build_model(parsed, parsed.model.student, num_classes=2, featurizer=feat, with_generator=True)
    torch.nn.init.normal_(model.selector.weight, std=1.0)
    ids = torch.randint(5, feat.vocab_size, (3, 16))
    inputs = Inputs(x=ids, attention=torch.ones_like(ids), selectable=torch.ones(3, 16), keep=None)
    z = model.generate(inputs)
    runs = z.view(3, 4, 4, 2)
    assert torch.allclose(runs, runs[:, :, :1].expand_as(runs))  # one score per run of 4 tokens
    masks = [model.select(z, inputs.selectable)]
    task = ReTask(parsed)
    masks += [task.sample(model, inputs, 1.0, torch.Generator().manual_seed(s))[2].detach() for s in range(3)]
    for m in masks:
        assert torch.equal(m.view(3, 4, 4), m.view(3, 4, 4)[:, :, :1].expand(3, 4, 4))  # whole runs only
    if selection == "topk":
        assert all(torch.equal(m.sum(1), torch.full((3,), 8.0)) for m in masks)


def test_span_is_refused_for_images():
    cfg = tiny_vision("re")
    cfg["model"] = {**cfg.get("model", {}), "span": 4}
    with pytest.raises(Exception, match="model.span"):
        parse_config(cfg)


def test_mean_kept_pooling_averages_only_the_tokens_the_predictor_reads():
    cfg = tiny_text("re")
    cfg["model"] = {"student": {**cfg["model"]["student"], "pooling": "mean_kept"}}
    parsed = parse_config(cfg)
    feat = TextFeaturizer(parsed.data, count_special=False)
    torch.manual_seed(0)
    model = build_model(parsed, parsed.model.student, num_classes=2, featurizer=feat, with_generator=False).eval()
    ids = torch.randint(5, feat.vocab_size, (2, 10))
    att = torch.ones_like(ids)
    att[1, 8:] = 0
    keep = torch.zeros(2, 10)
    keep[:, [1, 4, 5]] = 1
    h, pooled = model.predictor.encode(ids, att, keep)
    assert torch.allclose(pooled, h[:, [1, 4, 5]].mean(1), atol=1e-6)
    h_all, pooled_all = model.predictor.encode(ids, att, None)  # the full input: every real token
    assert torch.allclose(pooled_all[1], h_all[1, :8].mean(0), atol=1e-6)
    model.predictor.pooling = "mean"  # the plain mean counts the dropped tokens' states too
    assert not torch.allclose(model.predictor.encode(ids, att, keep)[1], pooled, atol=1e-4)
