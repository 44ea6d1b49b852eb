"""The ahead-of-time compiled step's cache (vaelab.training.aot): what its key depends on,
that a cached package is loaded and computes what the built one did, and that a damaged,
stale or unwritable cache is rebuilt or named in one line, never trusted."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from fakebuilds import FakeRunner

import vaelab
from vaelab.cli.main import main
from vaelab.errors import RunError
from vaelab.models import build_model
from vaelab.models.explicit import ExplicitStep
from vaelab.objectives import LossTerms
from vaelab.resolve import build_config
from vaelab.training import aot
from vaelab.training.loop import resolve_config
from vaelab.training.optim import Adam
from vaelab.training.tally import Tally

CPU = torch.device("cpu")


def _step(preset: str = "default", batch: int = 64, seed: int = 0, **settings):
    torch.manual_seed(seed)
    cfg = resolve_config(build_config(preset, settings={"device": "cpu", **settings}))
    model = build_model(cfg)
    step = ExplicitStep.for_model(model)
    samples = model.training_samples()
    x = torch.randn(batch, 2) * 6
    eps = torch.randn(((samples,) if samples else ()) + (batch, model.latent_dim))
    return model, step, x, eps


def _key(step: ExplicitStep, x: torch.Tensor, eps: torch.Tensor) -> str:
    return aot.key_of(aot.describe(step, (x, eps, torch.ones(()))))


def test_the_key_follows_shapes_settings_and_threads_not_weights():
    _, step, x, eps = _step()
    _, other_weights, _, _ = _step(seed=1)
    assert _key(other_weights, x, eps) == _key(step, x, eps)  # values are inputs
    assert _key(step, x[:32], eps[:, :32]) != _key(step, x, eps)  # another batch
    _, seed_step, _, seed_eps = _step("seed")
    assert _key(seed_step, x, seed_eps) != _key(step, x, eps)  # another loss and network
    _, std, _, _ = _step(**{"loss.learn_decoder_std": False})
    assert _key(std, x, eps) != _key(step, x, eps)  # fixed sigma: another computation
    before, key = torch.get_num_threads(), _key(step, x, eps)
    torch.set_num_threads(1 if before > 1 else 2)  # baked into the generated loops
    try:
        assert _key(step, x, eps) != key
    finally:
        torch.set_num_threads(before)
    description = aot.describe(step, (x, eps, torch.ones(())))
    assert description["torch"] == torch.__version__ and description["kind"] == "iwae"
    assert description["grads"][-4:] == ["obs_std_raw", "prior.means", "prior.log_stds",
                                         "prior.logits"]


@pytest.mark.slow  # a real build; the quick test below builds and reloads the folded step
def test_a_cached_step_loads_and_computes_what_the_built_one_did():
    model, step, x, eps = _step()  # the shapes test_compiled.py builds: often a cached one
    first, _ = aot.load_or_build(step, CPU, x, eps, 0.7)
    again, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert loaded
    results = []
    for fn in (first, again):
        for p in model.parameters():
            p.grad = None
        terms, z = fn(x, eps, 0.7)
        results.append((terms, z, [p.grad.clone() for p in model.parameters()]))
    (t1, z1, g1), (t2, z2, g2) = results
    assert torch.equal(t1, t2) and torch.equal(z1, z2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


def test_a_cached_step_is_loaded_not_built_again_and_fills_every_grad(fake_builds):
    built, steps = fake_builds
    model, step, x, eps = _step()
    steps["step"] = step
    fast, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert not loaded and len(built) == 1
    package = built[0]
    assert package.parent == aot.cache_dir() and package.exists()
    record = json.loads(package.with_suffix(".json").read_text())
    assert record["description"] == aot.describe(step, (x, eps, torch.ones(())))
    _, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert loaded and len(built) == 1
    # the step stores each gradient in its tensor's .grad, as the eager step does
    terms, _ = fast(x, eps, 0.7)
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None
    step(x, eps, 0.7)
    assert len(expected) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, expected[name]), name
    assert not list(aot.cache_dir().glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["package", "record", "stale"])
def test_a_damaged_or_stale_cache_entry_is_built_again(fake_builds, damage):
    built, steps = fake_builds
    _, step, x, eps = _step()
    steps["step"] = step
    aot.load_or_build(step, CPU, x, eps, 0.7)
    package = built[0]
    record = package.with_suffix(".json")
    if damage == "package":
        package.write_bytes(package.read_bytes()[:-1] + b"!")
    elif damage == "record":
        record.write_text("{not json")
    else:  # a record that describes something else
        data = json.loads(record.read_text())
        data["description"]["torch"] = "0.0.1"
        record.write_text(json.dumps(data))
    with pytest.warns(RuntimeWarning, match="does not match its record.*building it again"):
        _, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert not loaded and len(built) == 2
    _, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert loaded and len(built) == 2  # the rebuilt entry is trusted again


def test_a_package_that_does_not_load_is_built_again(fake_builds, monkeypatch):
    built, steps = fake_builds
    _, step, x, eps = _step()
    steps["step"] = step
    aot.load_or_build(step, CPU, x, eps, 0.7)
    opened = []

    def open_once_broken(package):  # noqa: ANN001, ANN202
        opened.append(package)
        if len(opened) == 1:
            raise RuntimeError("Error in dlopen: invalid ELF header")
        return FakeRunner(step)

    monkeypatch.setattr(aot, "_open", open_once_broken)
    with pytest.warns(RuntimeWarning, match="could not be loaded.*building it again"):
        _, loaded = aot.load_or_build(step, CPU, x, eps, 0.7)
    assert not loaded and len(built) == 2


def test_the_cache_keeps_the_most_recently_used_packages(tmp_path):
    for i in range(aot.KEEP + 3):
        package = tmp_path / f"{i:02d}.pt2"
        package.write_bytes(b"x")
        package.with_suffix(".json").write_text("{}")
        os.utime(package, (1000 + i, 1000 + i))
    aot._prune(tmp_path)
    kept = sorted(p.stem for p in tmp_path.glob("*.pt2"))
    assert kept == [f"{i:02d}" for i in range(3, aot.KEEP + 3)]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == kept


def test_an_unwritable_cache_is_named_in_one_line(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(aot.CACHE_ENV, str(blocker))
    _, step, x, eps = _step()
    with pytest.raises(RunError, match="could not write the compiled training step.*"
                                       "VAELAB_CACHE_DIR"):
        aot.load_or_build(step, CPU, x, eps, 0.7)
    settings = {"steps": 20, "batch_size": 32, "frame_every": 0, "log_every": 10,
                "device": "cpu"}
    # auto: trains eagerly, saying why; on: stops, saying why in one line
    monkeypatch.setattr("vaelab.training.plan.COMPILE_MIN_STEPS", 10)
    with pytest.warns(RuntimeWarning, match="could not write.*trained eagerly"):
        result = vaelab.train(preset="default", progress=False, **settings)
    assert not result.summary["compiled"] and result.summary["steps"] == 20
    out = tmp_path / "run"
    code = main(["train", "--preset", "default", "--steps", "20", "--batch-size", "32",
                 "--compile", "on", "--device", "cpu", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "VAELAB_CACHE_DIR" in err[0]
    assert not (out / "model.safetensors").exists()


def _adam(model, cfg):  # noqa: ANN001, ANN202
    return Adam(list(model.parameters()), [cfg.optim.lr])


def test_a_step_with_adam_and_the_tally_folded_in_updates_as_the_eager_step_does():
    cfg = resolve_config(build_config("default", settings={"device": "cpu"}))
    model, step, x, eps = _step()
    twin, third = copy.deepcopy(model), copy.deepcopy(model)
    twin_step, third_step = ExplicitStep.for_model(twin), ExplicitStep.for_model(third)
    opt, twin_opt, third_opt = _adam(model, cfg), _adam(twin, cfg), _adam(third, cfg)
    tally, twin_tally, third_tally = (Tally.start(torch.zeros(1, len(LossTerms._fields)), 0)
                                      for _ in "abc")
    fast, _ = aot.load_or_build(step, CPU, x, eps, 0.7, adam=aot.AdamTensors.of(opt, step),
                                tally=tally)
    assert fast.updates and fast.tallies
    # the same package again, from the cache, bound to another model's tensors
    cached, loaded = aot.load_or_build(third_step, CPU, x, eps, 0.7,
                                       adam=aot.AdamTensors.of(third_opt, third_step),
                                       tally=third_tally)
    assert loaded
    gen = torch.Generator().manual_seed(3)
    lrs = (1e-3, 1e-3, 5e-4)
    for lr in lrs:  # the learning rate is an input, not baked in
        xs, es = torch.randn(x.shape, generator=gen) * 6, torch.randn(eps.shape, generator=gen)
        for o in (opt, twin_opt, third_opt):
            o.set_factor(lr / cfg.optim.lr)
        terms, _ = fast(xs, es, 0.7)
        assert torch.equal(cached(xs, es, 0.7)[0], terms)  # the loaded package: same bits
        twin_terms, _ = twin_step(xs, es, 0.7)
        twin_opt.step()
        twin_tally.add(twin_terms.detach())
        torch.testing.assert_close(terms, twin_terms, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tally.sums, twin_tally.sums, rtol=1e-5, atol=1e-5)
    assert int(tally.step) == 3 and int(tally.bad_step) == 0
    assert int(tally.sums.abs().sum()) > 0
    assert opt.export_state().step == twin_opt.export_state().step == 3
    for i, ((name, p), q) in enumerate(zip(model.named_parameters(), twin.parameters(),
                                           strict=True)):
        assert p.grad is None, name  # the update used the gradients; none is kept
        # Adam moves a weight by about lr a step whatever its gradient's size, so rounding
        # can tip a weight whose gradient is ~0: a thousandth of the steps' summed rates (a
        # wrong update is off by about the rate itself; on an AMD EPYC one weight was 1.3e-6)
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-3 * sum(lrs))
        for ours, theirs in ((opt.exp_avgs[i], twin_opt.exp_avgs[i]),
                             (opt.exp_avg_sqs[i], twin_opt.exp_avg_sqs[i])):
            # the gradients' rounding, over a tensor
            assert (ours - theirs).norm() <= 1e-4 * theirs.norm(), name
    for p, q in zip(model.parameters(), third.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(tally.sums, third_tally.sums)
    fast(torch.full_like(x, float("nan")), eps, 0.7)  # a non-finite loss is noted by its step
    fast(x, eps, 0.7)
    assert int(tally.step) == 5 and int(tally.bad_step) == 4


def test_adam_is_folded_in_only_over_exactly_the_steps_gradients():
    cfg = resolve_config(build_config("default", settings={"device": "cpu"}))
    model, step, _, _ = _step()
    assert aot.AdamTensors.of(_adam(model, cfg), step) is not None
    with pytest.raises(ValueError, match="only over the step's own tensors"):
        aot.AdamTensors.of(Adam(list(model.encoder.parameters()), [1e-3]), step)
    stacked = [torch.zeros(2, *p.shape) for p in model.parameters()]
    with pytest.raises(ValueError, match="only over the step's own tensors"):  # two rates
        aot.AdamTensors.of(Adam(stacked, [1e-3, 2e-3]), step)


def test_the_cli_says_whether_it_built_or_loaded_the_step(fake_builds, monkeypatch, tmp_path,
                                                          capsys):
    built, _ = fake_builds
    said = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        code = main(["train", "--preset", "seed", "--steps", "20", "--batch-size", "32",
                     "--compile", "on", "--device", "cpu", "--out", str(out), "--no-figures"])
        captured = capsys.readouterr()
        summary = json.loads((out / "summary.json").read_text())
        said.append((code, captured.out, captured.err, summary["compile_cache"]))
    (code1, out1, err1, cache1), (code2, out2, err2, cache2) = said
    assert code1 == code2 == 0 and len(built) == 1
    assert cache1 == "built" and "compiling the training step for this machine" in err1
    assert "compiled the training step in" in out1
    assert cache2 == "loaded" and "loaded the compiled training step from the cache" in out2
    assert "compiling" not in err2


def test_the_key_covers_every_module_the_traced_step_runs():
    """Every vaelab source file in the exported program's stack traces is in the key's
    digest: an edited loss, prior or optimiser never reuses a stale package."""
    import inspect
    from pathlib import Path

    for preset in ("seed", "default"):
        model, step, x, eps = _step(preset)
        opt = _adam(model, resolve_config(build_config(preset, settings={"device": "cpu"})))
        adam = aot.AdamTensors.of(opt, step)
        tally = Tally.start(torch.zeros(1, len(LossTerms._fields)), 0)
        tensors = [*step.inputs().values(), *adam.tensors(), *tally.tensors()]
        example = (x, eps, torch.ones(()), *(t.detach().clone() for t in tensors))
        with torch.no_grad():
            program = torch.export.export(aot._Program(step, adam, True), example,
                                          strict=False)
        root = Path(inspect.getsourcefile(vaelab)).parent
        traced = set()
        for node in program.graph.nodes:
            for line in (node.meta.get("stack_trace") or "").splitlines():
                if 'File "' in line:
                    path = Path(line.split('File "')[1].split('"')[0])
                    if root in path.parents:
                        traced.add(path.resolve())
        keyed = {path.resolve() for path in aot.traced_modules().values()}
        assert traced, "no stack traces: the check would pass vacuously"
        assert traced <= keyed, sorted(str(p) for p in traced - keyed)


def test_a_builds_note_of_a_proxy_fallback_is_dropped_and_no_other(monkeypatch, tmp_path,
                                                                    caplog):
    """Inductor logs a warning for each op with no C shim (the full decoder covariance's
    triangular solve) while it builds: the build drops that note, keeps every other, and
    leaves Inductor's logger as it was."""
    ir = logging.getLogger("torch._inductor.ir")

    def compile_and_package(program, package_path):  # noqa: ANN001, ANN202
        ir.warning("aten.linalg_solve_triangular.default is missing a c-shim implementation, "
                   "using proxy executor as fallback")
        ir.warning("some other note")
        Path(package_path).write_bytes(b"a package")
        return package_path

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_and_package)
    _, step, x, eps = _step(batch=8)
    filters = list(ir.filters)
    with caplog.at_level(logging.WARNING, logger="torch._inductor.ir"):
        aot._build(step, (x, eps, torch.ones(())), tmp_path / "step.pt2")
    notes = [r.getMessage() for r in caplog.records if r.name == "torch._inductor.ir"]
    assert notes == ["some other note"]
    assert (tmp_path / "step.pt2").read_bytes() == b"a package"
    assert ir.filters == filters
    with caplog.at_level(logging.WARNING, logger="torch._inductor.ir"):
        ir.warning("x is missing a c-shim implementation")  # outside a build: as torch logs it
    assert caplog.records[-1].getMessage() == "x is missing a c-shim implementation"
