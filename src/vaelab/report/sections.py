"""What a report says: one run's page, and the comparison page of several runs or a group.

A run is taken as :class:`vaelab.runs.Run` holds it (config, model, metrics, frames, summary,
path); what ``vaelab evaluate`` and ``vaelab convergence`` measured is read from its
directory (:mod:`vaelab.results`), used only if it measured these very weights, and named by
the command that adds it when it is missing.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.describe import (
    data_words,
    kept_words,
    model_words,
    objective_short,
    objective_words,
    prior_short,
    prior_words,
    run_title,
    settings_changed,
    training_words,
)
from vaelab.metrics.sample_metrics import HOW_TO_READ, REPORT_METRICS
from vaelab.report.page import Page, esc, json_block, png_uri, table
from vaelab.results import (
    CONVERGENCE_FILE,
    DAMAGED,
    DENSITY_FILE,
    EVALUATION_FILE,
    load_density,
    load_result,
    model_digest,
)

if TYPE_CHECKING:
    from vaelab.runs import Run

METRIC_NAMES = {"mmd2": "MMD² (mean over bandwidths)", "energy": "energy distance (squared)",
                "c2st_accuracy": "classifier two-sample accuracy (C2ST)",
                "precision": "k-NN precision", "recall": "k-NN recall"}
LIKELIHOOD_ROWS = (
    ("nll", "test NLL (IWAE)", "-log p(x) of fresh test points under the model, IWAE with K "
     "samples (an upper bound that tightens with K); lower is better."),
    ("elbo", "ELBO", "the evidence lower bound on log p(x) of the same points; its distance "
     "below -NLL is what the encoder's q(z|x) misses."),
    ("entropy", "true entropy H", "-log p(x) under the true density, averaged: the NLL a "
     "perfect model would score (its stderr is that of the exact density's estimate)."),
    ("nll_gap", "gap NLL − H", "KL(p || model) >= 0, the nats per point the model loses to "
     "the truth, paired over the same points: 0 is perfect."),
)


class Saved:
    """What ``evaluate`` and ``convergence`` left in a run's directory, each with its state:
    ``"ok"``, ``"missing"``, ``"stale"`` (of other weights) or ``"damaged"`` (it fails its
    checksum: edited or corrupted)."""

    def __init__(self, run: Run) -> None:
        self.path: Path | None = run.path
        digest = model_digest(run.model)
        self.evaluation, self.evaluation_state = self._get(
            lambda p: load_result(p / EVALUATION_FILE), digest)
        self.convergence, self.convergence_state = self._get(
            lambda p: load_result(p / CONVERGENCE_FILE), digest)
        self.density, self.density_state = self._get(lambda p: load_density(p / DENSITY_FILE),
                                                     digest)

    def _get(self, read: Any, digest: str) -> tuple[Any, str]:
        if self.path is None:
            return None, "missing"
        found = read(self.path)
        if found is None:
            return None, "missing"
        if found is DAMAGED:
            return None, "damaged"
        if found.get("model_sha256") != digest:
            return None, "stale"
        return found, "ok"


def _command(name: str, run: Run) -> str:
    where = shlex.quote(str(run.path)) if run.path is not None else "RUN"
    return f"vaelab {name} {where}"


def _missing(what: str, command: str, state: str, run: Run) -> str:
    if run.path is None:
        return (f'<p class="note">{esc(what)}: not measured. Save the run (<code>vaelab.train('
                f'out=...)</code> or <code>run.save(...)</code>), then run <code>{esc(command)}'
                "</code>.</p>")
    why = {"stale": "measured an earlier model in this directory (its weights differ), so it "
                    "is not shown",
           "damaged": "its file was edited or corrupted after it was written (it fails its "
                      "checksum), so it is not shown"}.get(state, "not measured yet")
    return (f'<p class="note">{esc(what)}: {why}. <code>{esc(command)}</code> adds it; then '
            f"<code>{esc(_command('report', run))}</code> again.</p>")


def _value(report: dict[str, Any], key: str) -> str:
    value, se = report.get(key), report.get(f"{key}_stderr")
    if value is None:
        return "n/a"
    if se is not None and math.isfinite(se):
        return f"{value:.4f} ± {se:.4f}"
    return f"{value:.4f}"


def _num(key: str, value: Any, text: str) -> str:
    sort = "" if value is None else f' data-sort="{esc(repr(value))}"'
    raw = "" if value is None else f' data-value="{esc(repr(value))}"'
    return f'<td class="num" data-key="{esc(key)}"{raw}{sort}>{esc(text)}</td>'


def _inline(key: str, value: Any, text: str) -> str:
    """A number inside a sentence, keyed like a table's (:func:`_num`)."""
    return f'<span class="num" data-key="{esc(key)}" data-value="{esc(repr(value))}">' \
        f'{esc(text)}</span>'


def _name(run: Run) -> str:
    return run.path.name if run.path is not None else "(not saved)"


# -- one run ---------------------------------------------------------------------------------

def run_page(run: Run) -> Page:
    """Every section of one run's report."""
    cfg = run.config
    page = Page(f"vaelab run {_name(run)}")
    saved = Saved(run)
    where = f" · <code>{esc(run.path)}</code>" if run.path is not None else ""
    page.add(f"<h1>vaelab run {esc(_name(run))}</h1>",
             f'<p class="sub">{esc(run_title(cfg))}{where}</p>')
    page.add(*_trained(run))
    page.add(*_evaluation(run, saved))
    if run.frames:
        from vaelab.report.figures import panels_figure

        page.add("<h2>The seed's three panels over training</h2>", page.figure(
            panels_figure(run.frames, cfg, run.columns),
            "Move the slider (or press play) to go through training, one display frame per "
            f"step shown ({len(run.frames)} frames). Left: a batch of real training points; "
            "middle: their posterior codes z ~ q(z|x); right: the same fixed draws from "
            f"p(z) = {esc(prior_short(cfg))}, decoded to decoder means. Drag to zoom, "
            "double-click to reset, hover for coordinates."))
    if run.metrics:
        from vaelab.report.figures import curves_figure

        page.add("<h2>Training curves</h2>", page.figure(
            curves_figure(run.metrics, cfg),
            "Interval means over training batches, in nats per point. The y range starts "
            "after the first tenth of training (double-click an axis to see all of it)."))
    page.add(*_density(run, saved, page))
    page.add(*_convergence(run, saved, page))
    page.add(*_pngs(run, saved))
    return page


def _trained(run: Run) -> list[str]:
    cfg, s = run.config, run.summary
    items = [("data", data_words(cfg)), ("model", model_words(cfg)),
             ("prior p(z)", prior_words(cfg)), ("objective", objective_words(cfg)),
             ("training", training_words(cfg))]
    out = ["<h2>What was trained</h2>", "<ul>" + "".join(
        f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in items) + "</ul>"]
    if s.get("steps") is not None:
        final = s.get("final", {})
        stopped = str(s.get("stopped_by", "steps")).replace("_", " ")
        elbo = (f"; final -ELBO {final['neg_elbo']:.3f} nats per point (train batches)"
                if "neg_elbo" in final else "")
        kept = kept_words(s)
        kept = f" It {kept}." if kept else ""
        out.append(f"<p>Trained {s['steps']} steps in {s.get('train_seconds', 0):.1f} s on "
                   f"{esc(s.get('device', '?'))} (stopped by {esc(stopped)}){esc(elbo)}."
                   f"{esc(kept)}</p>")
    changed = settings_changed(cfg)
    base = f"the {cfg.preset} preset" if cfg.preset else "the built-in defaults (no preset)"
    if changed:
        rows = [[f"<td><code>{esc(path)}</code></td>", f"<td>{esc(_show(before))}</td>",
                 f"<td><b>{esc(_show(after))}</b></td>"] for path, before, after in changed]
        out.append(f"<p>Settings that differ from {esc(base)}:</p>")
        out.append(table(["setting", "preset", "this run"], rows))
    else:
        out.append(f"<p>Every setting is that of {esc(base)}.</p>")
    out.append("<details><summary>The resolved config (<code>config.json</code>)</summary>"
               + json_block(cfg.to_dict()) + "</details>")
    return out


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def _evaluation(run: Run, saved: Saved) -> list[str]:
    out = ["<h2>Evaluation</h2>"]
    ev = saved.evaluation
    if ev is None:
        return out + [_missing("The test NLL, the gap to the true entropy and the sample "
                               "metrics", _command("evaluate", run), saved.evaluation_state,
                               run)]
    out.append(f"<p>On {esc(ev.get('test_set', 'the test set'))}; IWAE with K = "
               f"{esc(ev.get('k'))}; {esc(ev.get('units', 'nats per data point'))}.</p>")
    rows = []
    for key, label, how in LIKELIHOOD_ROWS:
        rows.append([f"<td>{esc(label)}</td>", _num(key, ev.get(key), _value(ev, key)),
                     f'<td class="how">{esc(how)}</td>'])
    out.append(table(["", "nats per point", "how to read it"], rows))
    baselines = ev.get("baselines")
    if baselines:
        from vaelab.evaluation import BASELINE_NAMES, format_params

        out.append(f"<p>A data file has no true density: the reference is two classical "
                   f"estimators fitted on {esc(baselines['fitted_on'])} and scored on the same "
                   f"points. So {esc(baselines['verdict'])}.</p>")
        rows = []
        for key, name in BASELINE_NAMES.items():
            r = baselines[key]
            rows.append([f"<td>{esc(name)} ({esc(format_params(r['params']))})</td>",
                         _num(f"baselines.{key}.nll", r["nll"],
                              f"{r['nll']:.4f} ± {r['nll_stderr']:.4f}"),
                         _num(f"baselines.{key}.diff", r["model_minus_baseline"],
                              f"{r['model_minus_baseline']:+.4f} ± "
                              f"{r['model_minus_baseline_stderr']:.4f}")])
        out.append(table(["baseline", "NLL, nats per row", "model − baseline"], rows))
    seen = ev.get("training_rows")
    if seen:
        out.append(f"<p>On {esc(seen['n'])} of the {esc(seen['of'])} rows it trained on, the "
                   "model's NLL is " + _inline("training_rows.nll", seen["nll"],
                                               f"{seen['nll']:.4f} ± {seen['nll_stderr']:.4f}")
                   + " nats per row; held-out minus it: " + _inline(
                       "training_rows.diff", seen["held_out_minus_training"],
                       f"{seen['held_out_minus_training']:+.4f} ± "
                       f"{seen['held_out_minus_training_stderr']:.4f}")
                   + f". So {esc(seen['verdict'])}.</p>")
    metrics = ev.get("sample_metrics")
    if metrics:
        out.append(f"<p>Sample metrics: {metrics['n']} generated points against as many real "
                   "ones. Each <b>floor</b> is a second, independent real sample scored the "
                   "same way: what a perfect generator would get at this n.</p>")
        rows = []
        for key in REPORT_METRICS:
            entry = metrics[key]
            label = METRIC_NAMES[key] + (f" (k = {entry['k']})" if "k" in entry else "")
            rows.append([f"<td>{esc(label)}</td>",
                         _num(f"{key}.value", entry["value"], f"{entry['value']:.4g}"),
                         _num(f"{key}.floor", entry["floor"], f"{entry['floor']:.4g}"),
                         f'<td class="how">{esc(HOW_TO_READ[key])}</td>'])
        out.append(table(["metric", "value", "floor", "how to read it"], rows))
    return out


def _density(run: Run, saved: Saved, page: Page) -> list[str]:
    out = ["<h2>The model's density beside the true one</h2>"]
    if run.model.in_channels != 2:
        return out + [f"<p>Density maps are drawn for 2-D data; this run's data has "
                      f"{run.model.in_channels} dimensions.</p>"]
    if saved.density is None:
        return out + [_missing("The log-density map", _command("evaluate", run),
                               saved.density_state, run)]
    from vaelab.report.figures import density_figure

    return out + [page.figure(density_figure(saved.density),
                              "log p(x) in nats on a grid, true (left, where it is known) and "
                              f"the model's (IWAE, K = {saved.density['k']}), on one colour "
                              "scale, its top 12 nats. Hover for the value at a point.")]


def _convergence(run: Run, saved: Saved, page: Page) -> list[str]:
    out = ["<h2>How the log p(x) estimators converge with K</h2>"]
    result = saved.convergence
    if result is None:
        return out + [_missing("The estimators' convergence", _command("convergence", run),
                               saved.convergence_state, run)]
    from vaelab.report.figures import convergence_figure

    out.append(page.figure(convergence_figure(result),
                           f"{esc(result['test_set'])}; {result['repeats']} repeats per K. "
                           "The y range of the left panel is fitted to the bounds and the "
                           "truth: plain Monte Carlo over the prior may start off the scale "
                           "(zoom out, or see the table)."))
    has_truth = result.get("true_mean") is not None
    headers = ["estimator", "K", "mean log p(x)", "MC std"] + (
        ["mean |error|"] if has_truth else [])
    rows = []
    for r in result["rows"]:
        cells = [f"<td>{esc(r['estimator'])}</td>", _num("k", r["k"], str(r["k"])),
                 _num("mean", r["mean"], f"{r['mean']:.4f}"),
                 _num("mc_std", r["mc_std"], f"{r['mc_std']:.4f}")]
        if has_truth:
            cells.append(_num("mean_abs_error", r["mean_abs_error"],
                              f"{r['mean_abs_error']:.4f}"))
        rows.append(cells)
    out.append("<details><summary>The table</summary>" + table(headers, rows) + "</details>")
    return out


def _pngs(run: Run, saved: Saved) -> list[str]:
    """The PNG figures (as ``vaelab plot``, ``evaluate`` and ``convergence`` draw them)."""
    from vaelab.plots.convergence import draw_convergence
    from vaelab.plots.curves import draw_loss_curves
    from vaelab.plots.density import draw_density
    from vaelab.plots.panels import draw_panels, run_limits

    cfg = run.config
    title = f"vaelab {cfg.preset or 'custom'}: {objective_short(cfg)} | "
    images = []
    if run.frames:
        images.append(("the three panels at the last step", draw_panels(
            run.frames[-1], run_limits(run.frames), title, prior_short(cfg), run.columns)))
    if run.metrics:
        images.append(("training curves", draw_loss_curves(run.metrics, f"vaelab "
                                                           f"{run_title(cfg)}", cfg)))
    if saved.density is not None:
        g = saved.density
        images.append(("log-density", draw_density(g["gx"], g["gy"], g["model_logp"],
                                                    g["true_logp"], f"vaelab {run_title(cfg)}",
                                                    k=g["k"])))
    if saved.convergence is not None:
        images.append(("the estimators against K", draw_convergence(saved.convergence)))
    if not images:
        return []
    return ["<h2>The same as PNG figures</h2>",
            "<p>Still images of the figures above, for a slide or a paper.</p>"] + [
        f'<figure><img alt="{esc(alt)}" src="{png_uri(fig)}"><figcaption>{esc(alt)}'
        "</figcaption></figure>" for alt, fig in images]


# -- several runs ----------------------------------------------------------------------------

def comparison_page(runs: Sequence[Run], title: str) -> Page:
    """A sortable table of the runs, their generated points side by side, their curves."""
    page = Page(title)
    page.add(f"<h1>{esc(title)}</h1>",
             f'<p class="sub">{len(runs)} runs · {esc(run_title(runs[0].config))}</p>')
    page.add(*_differences(runs))
    page.add(*_table(runs))
    framed = [r for r in runs if r.frames]
    if framed:
        from vaelab.plots.compare import draw_comparison
        from vaelab.report.figures import samples_figure

        same = len({r.config.data.name for r in framed}) == 1
        real = framed[0].frames[-1].data.numpy()
        samples = [(_name(r), r.frames[-1].generated.numpy()) for r in framed]
        dims = {r.frames[-1].generated.shape[1] for r in framed}
        cols = " (the first two columns)" if max(dims) > 2 else ""
        page.add("<h2>Generated points side by side</h2>", page.figure(
            samples_figure(real, samples, same),
            f"Each run's fixed prior draws, decoded (decoder means), at its last step{cols}, "
            f"beside a batch of real points of {esc(framed[0].config.data.name)}"
            + (" (zoom one panel, all follow)." if same else ".")))
        if all(d == 2 for d in dims):
            cut = [(name, points[:len(real)]) for name, points in samples]  # same n each
            png = png_uri(draw_comparison(real, cut, title=framed[0].config.data.name))
            page.add(f'<figure><img alt="generated points side by side" src="{png}">'
                     "<figcaption>The same as a PNG figure.</figcaption></figure>")
    with_metrics = [(_name(r), r.metrics) for r in runs if r.metrics]
    if with_metrics:
        from vaelab.report.figures import compare_curves_figure

        page.add("<h2>Training curves</h2>", page.figure(
            compare_curves_figure(with_metrics),
            "-ELBO on the training batches, interval means, nats per point (click a legend "
            "entry to hide a run)."))
    page.add("<p>Each run's own page (its panels over training, density and convergence): "
             "<code>vaelab report RUN</code>.</p>")
    return page


def _differences(runs: Sequence[Run]) -> list[str]:
    flat = [_flatten(r.config.to_dict()) for r in runs]
    keys = [k for k in flat[0] if k != "model.in_channels"
            and len({repr(f.get(k)) for f in flat}) > 1]
    if not keys:
        return ["<p>The runs share every setting.</p>"]
    return ["<p>The runs differ in " + ", ".join(f"<code>{esc(k)}</code>" for k in keys)
            + "; everything else is the same.</p>"]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _table(runs: Sequence[Run]) -> list[str]:
    headers = ["run", "preset", "objective", "p(z)", "lr", "KL weight", "seed", "steps",
               "train s", "-ELBO (train)", "test NLL", "gap NLL − H", "C2ST (floor)",
               "precision (floor)", "recall (floor)"]
    rows, unevaluated = [], []
    for run in runs:
        cfg, s = run.config, run.summary
        saved = Saved(run)
        ev = saved.evaluation or {}
        sm = ev.get("sample_metrics") or {}
        final = s.get("final", {})
        cells = [f"<td>{esc(_name(run))}</td>", f"<td>{esc(cfg.preset or 'custom')}</td>",
                 f"<td>{esc(objective_short(cfg))}</td>", f"<td>{esc(prior_short(cfg))}</td>",
                 _num("lr", cfg.optim.lr, f"{cfg.optim.lr:g}"),
                 _num("kld_weight", cfg.loss.kld_weight, f"{cfg.loss.kld_weight:g}"),
                 _num("seed", cfg.train.seed, str(cfg.train.seed)),
                 _num("steps", s.get("steps"), str(s.get("steps", "—"))),
                 _num("train_seconds", s.get("train_seconds"),
                      f"{s['train_seconds']:.1f}" if "train_seconds" in s else "—"),
                 _num("neg_elbo", final.get("neg_elbo"),
                      f"{final['neg_elbo']:.3f}" if "neg_elbo" in final else "—")]
        for key in ("nll", "nll_gap"):
            cells.append(_num(key, ev.get(key), _value(ev, key) if ev else "—"))
        for key in ("c2st_accuracy", "precision", "recall"):
            entry = sm.get(key)
            cells.append(_num(key, entry["value"] if entry else None,
                              f"{entry['value']:.3f} ({entry['floor']:.3f})" if entry else "—"))
        rows.append(cells)
        if not ev:
            unevaluated.append(run)
    out = ["<h2>The runs</h2>", "<p>Click a column's header to sort by it.</p>",
           table(headers, rows, sortable=True)]
    if unevaluated:
        cmds = "; ".join(f"<code>{esc(_command('evaluate', r))}</code>" for r in unevaluated)
        out.append(f'<p class="note">{len(unevaluated)} of the runs are not evaluated (—): '
                   f"{cmds} adds their test NLL, gap and sample metrics; then report again.</p>")
    return out
