"""The `separability` CLI end to end on tiny settings: files written, results.json contract, exact values."""

import json

import jax
import numpy as np
import pytest

from gaussian_oracle import JointGaussian
import learned
from verify.cli import main

TINY = ["--steps", "200", "--n-train", "4000", "--n-eval", "200", "--n-times", "16", "--width", "32",
        "--depth", "1", "--no-progress"]
CONTRACT = {"experiment", "instance", "quantities", "versions", "device", "wall_time_s"}


def _check_quantities(q: dict, g: JointGaussian) -> None:
    """The `quantities` block of a trained Gaussian run against the oracle `g`: each exact value and exact_at_T (the
    closed form, and its curve at T), and each estimate's relative_error and z from its own value and stderr (guards:
    a wrong reference time, a wrong error formula)."""
    T = g.sde.T
    oracle = {"mutual_information": (g.mutual_information(), g.mutual_information_curve(T), ("minde", "difference")),
              "total_entropy": (g.total_entropy(), g.total_entropy_curve(T), ("neural", "neural_log_grid")),
              "conditional_total_entropy": (g.conditional_total_entropy(), g.conditional_total_entropy_curve(T),
                                            ("neural", "neural_log_grid"))}
    assert set(q) == set(oracle)
    for block, (exact, at_T, estimators) in oracle.items():
        assert q[block]["exact"] == pytest.approx(exact, rel=1e-12)
        assert q[block]["exact_at_T"] == pytest.approx(at_T, rel=1e-12)
        assert q[block]["exact_at_T"] != pytest.approx(exact, rel=1e-12)  # T is finite: a separate number
        for name in estimators:
            _check_entry(q[block][name], q[block]["exact"])


def _check_entry(entry: dict, exact: float) -> None:
    """relative_error = (value - exact)/exact and z = (value - exact)/stderr of one estimate."""
    assert np.isfinite(entry["value"]) and entry["stderr"] > 0
    assert entry["relative_error"] == pytest.approx((entry["value"] - exact) / exact, rel=1e-12)
    assert entry["z"] == pytest.approx((entry["value"] - exact) / entry["stderr"], rel=1e-12)


def _check_grid_sums(res: dict, g: JointGaussian) -> None:
    """Each uniform-grid estimate is the midpoint sum h * sum(rate) of its own rate curve in `curves` (I_diff: of the
    conditional minus the unconditional rate), and each exact_rate is the oracle's (guards: two entries swapped)."""
    c, n = res["curves"], res["config"]["n_times"]
    h = g.sde.T / n
    times = np.array(c["times"])
    np.testing.assert_allclose(times, h * (np.arange(n) + 0.5), rtol=1e-12)  # the midpoint grid on [0, T]
    for name, exact_rate in (("neural", g.entropy_rate), ("conditional_neural", g.conditional_entropy_rate),
                             ("minde", g.mutual_information_rate)):
        np.testing.assert_allclose(c[name]["exact_rate"], exact_rate(times), rtol=1e-12, err_msg=name)
    rate = {name: np.array(c[name]["rate"]) for name in ("neural", "conditional_neural", "minde")}
    q = res["quantities"]
    for entry, r in ((q["total_entropy"]["neural"], rate["neural"]),
                     (q["conditional_total_entropy"]["neural"], rate["conditional_neural"]),
                     (q["mutual_information"]["minde"], rate["minde"]),
                     (q["mutual_information"]["difference"], rate["conditional_neural"] - rate["neural"])):
        assert entry["value"] == pytest.approx(h * np.sum(r), rel=1e-12, abs=1e-12)


def test_oracle_report(tmp_path):
    assert main(["oracle", "--out", str(tmp_path), "--dim-x", "6", "--dim-y", "3", "--n-times", "30", "--n-cfg", "3"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert CONTRACT <= set(res)
    g = JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(0))
    q = res["quantities"]
    assert q["mutual_information"]["exact"] == pytest.approx(g.mutual_information(), rel=1e-12)
    assert q["total_entropy"]["exact"] == pytest.approx(g.total_entropy(), rel=1e-12)
    # every curve is the oracle method it is named after, at the stored times (guards: one curve swapped for another)
    times = np.array(res["curves"]["times"])
    methods = {"total_entropy": g.total_entropy_curve, "conditional_total_entropy": g.conditional_total_entropy_curve,
               "mutual_information": g.mutual_information_curve, "total_correlation": g.total_correlation_curve,
               "entropy_rate": g.entropy_rate, "conditional_entropy_rate": g.conditional_entropy_rate,
               "mutual_information_rate": g.mutual_information_rate}
    assert set(res["curves"]) == {"times", *methods} and len(times) == 30 and times[0] == 0.0
    for name, method in methods.items():
        np.testing.assert_allclose(res["curves"][name], method(times), rtol=1e-12, err_msg=name)
    # each CFG row is its own instance's oracle (key 0, D_X = 25, sigma_eps = 1, s_end = 1e-3; guards: the reference
    # time of I(X_{s_end}; Y), the start of the exact-start flow)
    cfg, w, s_end = res["cfg"], np.linspace(0.0, 20.0, 3), 1e-3
    assert cfg["w"] == w.tolist() and cfg["s_end"] == s_end and cfg["dim_x"] == 25 and cfg["sigma_eps"] == 1.0
    assert [row["dim_y"] for row in cfg["rows"]] == [5, 10, 15]
    for row in cfg["rows"]:
        joint = JointGaussian.determinism(25, row["dim_y"], 1.0, key=jax.random.key(0))
        at_s_end = joint.mutual_information() - joint.mutual_information_curve(s_end)  # I(X_{s_end}; Y)
        assert row["mutual_information"] == pytest.approx(joint.mutual_information(), rel=1e-12)
        assert row["mutual_information_at_s_end"] == pytest.approx(at_s_end, rel=1e-12)
        np.testing.assert_allclose(row["cfg_mutual_information"], joint.cfg_mutual_information(w, s_end), rtol=1e-12)
        np.testing.assert_allclose(row["cfg_mutual_information_exact_start"],
                                   joint.cfg_mutual_information(w, s_end, exact_start=True), rtol=1e-12)
        # unguided from the exact p_T the flow gives I(X_{s_end}; Y), to the ODE solver's tolerance
        assert row["cfg_mutual_information_exact_start"][0] == pytest.approx(at_s_end, rel=1e-8)
    for name in ("curves.png", "determinism_sweep.png", "flattening_sweep.png", "cfg.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_demo_contract_and_rebuildable_instance(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--dim-x", "4", "--dim-y", "2", "--seed", "3", *TINY]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert CONTRACT <= set(res)
    inst = res["instance"]
    assert {"dim_x", "dim_y", "sigma_eps", "seed"} <= set(inst)
    g = JointGaussian.determinism(inst["dim_x"], inst["dim_y"], inst["sigma_eps"], key=jax.random.key(inst["seed"]))
    _check_quantities(res["quantities"], g)
    _check_grid_sums(res, g)
    assert (tmp_path / "rates.png").exists() and (tmp_path / "report.txt").exists()
    assert (tmp_path / "checkpoints" / "conditional" / "checkpoint.eqx").exists()


def test_gaussian_sweeps(tmp_path):
    out = tmp_path / "flat"
    args = ["gaussian", "--experiment", "flattening", "--out", str(out), "--dim-x", "5", "--dim-y", "2", "--k", "2",
            "--lambda-delta", "0.1", "0.001", "--sigma-eps", "1.0", *TINY]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["values"] == [0.1, 0.001] and len(summary["points"]) == 2
    for sub in ("lambda_delta=0.1", "lambda_delta=0.001"):
        res = json.loads((out / sub / "results.json").read_text())
        assert CONTRACT <= set(res) and res["instance"]["k"] == 2
        inst = res["instance"]
        g = JointGaussian.flattening(inst["dim_x"], inst["dim_y"], inst["k"], inst["lambda_delta"], inst["sigma_eps"],
                                     key=jax.random.key(inst["seed"]), eps=inst["eps"])
        _check_quantities(res["quantities"], g)
        _check_grid_sums(res, g)
    assert (out / "sweep.png").exists()

    out = tmp_path / "cfg"
    assert main(["gaussian", "--experiment", "cfg", "--out", str(out), "--dim-x", "4", "--dim-y", "2", "--w", "2.0",
                 "--sigma-eps", "1.0", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    g = JointGaussian.determinism(4, 2, 1.0, key=jax.random.key(0))
    q = res["quantities"]["mutual_information"]
    assert q["exact"] == pytest.approx(g.cfg_mutual_information(2.0), rel=1e-10)
    assert q["exact_unguided"] == pytest.approx(g.mutual_information(), rel=1e-12)
    for name in ("minde", "difference"):  # errors against the guided truth
        _check_entry(q[name], q["exact"])


@pytest.mark.parametrize("argv, message", [
    (["oracle", "--n-times", "0"], "--n-times: must be a positive integer"),
    (["oracle", "--n-times", "2"], "n_times must be an integer >= 3"),
    (["oracle", "--n-cfg", "1"], "n_cfg must be 0"),
    (["oracle", "--n-cfg", "-1"], "--n-cfg: must be an integer >= 0"),
    (["demo", "--steps", "0"], "--steps: must be a positive integer"),
    (["demo", "--n-eval", "1"], "--n-eval: must be at least 2"),
    (["demo", "--lr", "nan"], "--lr: must be a finite number > 0"),
    (["gaussian", "--experiment", "cfg", "--w", "inf"], "--w: must be a finite number"),
    (["images", "--n-eval", "0"], "--n-eval: must be at least 2"),
    (["images", "--pixel-range", "1,0"], "--pixel-range: must be two numbers"),
    (["images", "--weighting", "uniform"], "--weighting: must be one of likelihood, constant"),
    (["images", "--training-times", "geometric"], "--training-times: must be one of log-snr, uniform"),
    (["images", "--train-s-min", "0.5"], "--train-s-min: must be a fraction of T in (0, 0.01)"),
    (["images", "--label-dropout", "1.5"], "--label-dropout"),
    (["images", "--gaussian-base", "-1"], "--gaussian-base: must be a finite number >= 0"),
    (["images", "--posterior-draws", "0"], "--posterior-draws: must be a positive integer"),
    (["images", "--quick", "--posterior-draws", "2"], "and needs a posterior"),
    (["images", "--quick", "--guidance-training", "separate"],
     "--guidance-training applies only with --guided (the noisy classifiers it configures)"),
    (["images", "--guidance-training", "apart"], "--guidance-training: must be one of joint, separate"),
    (["images", "--dataset", "mnist"], "needs --data-dir"),
    (["images", "--cpu"], "--cpu is sized for --dataset mnist5k or fashion-mnist or mnist; got 'digits'"),
    (["images", "--quick", "--cpu"], "not allowed with argument"),
    (["budget", "--cpu", "--dataset", "digits"], "--cpu is sized for --dataset"),
    (["autoencoder", "--gamma", "-1"], "--gamma: must be a finite number >= 0"),
    (["autoencoder", "--weighting", "uniform"], "--weighting: must be one of likelihood, constant"),
    (["autoencoder", "--train-s-min", "0.5"], "--train-s-min: must be a fraction of T in (0, 0.01)"),
    (["autoencoder", "--tau", "0.1,0.2,0.1"], "--tau: must not repeat a split time"),
    (["autoencoder", "--posterior-steps", "0"], "--posterior-steps: must be a positive integer"),
    (["autoencoder", "--quick", "--tau", "none", "--no-comparison"], "nothing to run"),
    # flags the chosen configuration would not use (they were dropped without a word)
    *[([command, *where, "--training-times", "uniform", "--train-s-min", "0.005"],
       "--train-s-min applies only with --training-times log-snr (the default)")
      for command, *where in (["images", "--quick"], ["autoencoder", "--quick"], ["budget", "--quick"],
                              ["labels", "--dataset", "digits", "--quick"])],
    (["images", "--quick", "--guidance-steps", "77", "--guidance-channels", "3", "3", "--guidance-cross-entropy", "3"],
     "--guidance-steps, --guidance-channels, --guidance-cross-entropy apply only with --guided"),
    (["images", "--cpu", "--dataset", "mnist5k", "--no-guided", "--guidance-channels", "8", "8"],
     "--guidance-channels applies only with --guided"),
    (["budget", "--quick", "--guidance-cross-entropy", "2"], "--guidance-cross-entropy applies only with --guided"),
    (["images", "--quick", "--guided", "--guidance-steps", "5"],
     "--guidance-steps applies only with --guided --guidance-training separate"),
    (["images", "--cpu", "--dataset", "mnist5k", "--guidance-cross-entropy", "2"],
     "--guidance-cross-entropy applies only with --guided --guidance-training joint"),
    (["images", "--quick", "--n-train", "1501"],
     "--n-train 1501 is more than --dataset digits has: give at most its 1500 training images"),
    (["budget", "--quick", "--n-train", "99999"], "--n-train 99999 is more than --dataset digits has"),
    (["labels", "--dataset", "digits", "--quick", "--n-train", "1501"], "--n-train 1501 is more than"),
    (["autoencoder", "--quick", "--n-train", "1501"], "--n-train 1501 is more than"),
    *[([command, *where, "--n-eval", "298"],
       "--n-eval 298 is more than --dataset digits has: give at most its 297 held-out (test) images")
      for command, *where in (["images", "--quick"], ["autoencoder", "--quick"], ["budget", "--quick"],
                              ["labels", "--dataset", "digits", "--quick"])],
    (["gaussian", "--experiment", "flattening", "--sigma-eps", "1", "0.5"],
     "--experiment flattening uses one --sigma-eps value; got 2 (1 0.5). Only --experiment determinism sweeps"),
    (["gaussian", "--experiment", "cfg", "--sigma-eps", "1", "0.5", "0.2"], "--experiment cfg uses one --sigma-eps"),
    (["gaussian", "--experiment", "determinism", "--lambda-delta", "0.1"],
     "--lambda-delta applies only to --experiment flattening; --experiment determinism does not use it"),
    (["gaussian", "--experiment", "cfg", "--k", "3"], "--k applies only to --experiment flattening"),
    (["gaussian", "--experiment", "determinism", "--w", "1"], "--w applies only to --experiment cfg"),
    (["gaussian", "--experiment", "flattening", "--w", "1"], "--w applies only to --experiment cfg"),
    (["gaussian", "--experiment", "cfg", "--condition-dropout", "0.3"],
     "--condition-dropout applies only with --one-network"),
    (["demo", "--condition-dropout", "0.3"], "--condition-dropout applies only with --one-network"),
    (["budget", "--gaussian", "--steps", "5"], "--steps configures the images experiment; --gaussian budgets"),
    (["budget", "--gaussian", "--dataset", "mnist5k", "--no-cross-fit"],
     "--dataset, --no-cross-fit configure the images experiment"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, argv, message):
    """Each bad flag gives one line naming it, before anything is trained or written."""
    out = tmp_path / "out"
    argv = [argv[0], "--out", str(out), *argv[1:]]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors exit with status 2
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_steps_need_not_be_a_multiple_of_the_scan_length(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--dim-x", "3", "--dim-y", "1", *TINY[2:], "--steps", "30"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["train"]["steps"] == 30


def test_help_lists_the_registered_experiments(capsys):
    from verify.experiments import EXPERIMENTS

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name, experiment in EXPERIMENTS.items():
        assert name in text and experiment.description[:30] in text


def test_stale_checkpoints_are_refused_not_reused(tmp_path, capsys):
    """Regression: `demo --seed 1` in the folder of a `--seed 0` run silently resumed the seed-0 networks (S_NN^X
    +124.6 % off). Now it stops with an error naming the difference; `--restart` trains afresh; `--seed 0` resumes."""
    small = ["--out", str(tmp_path), "--dim-x", "3", "--dim-y", "1", *TINY]
    assert main(["demo", "--seed", "0", *small]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    capsys.readouterr()
    assert main(["demo", "--seed", "1", *small]) == 2
    err = capsys.readouterr().err
    assert "Cannot resume" in err and "data_x" in err and "key" in err and "--restart" in err
    assert json.loads((tmp_path / "results.json").read_text())["instance"]["seed"] == 0  # nothing overwritten
    assert main(["demo", "--seed", "1", "--restart", *small]) == 0
    fresh = json.loads((tmp_path / "results.json").read_text())
    g = JointGaussian.determinism(3, 1, 1.0, key=jax.random.key(1))
    assert fresh["instance"]["seed"] == 1
    assert fresh["quantities"]["total_entropy"]["exact"] == pytest.approx(g.total_entropy(), rel=1e-12)
    assert fresh["quantities"]["total_entropy"]["neural"]["value"] != first["quantities"]["total_entropy"]["neural"]["value"]


def test_cpu_preset_builds_the_measured_configuration():
    """`images --cpu` is the configuration of `benchmarks/results/images_{mnist5k,fmnist}_cpu_preset/` (one small
    unconditional U-Net of 1,200 steps, batch 64; on each half a 16/32-channel noisy classifier of 3,000 steps, on
    Fashion-MNIST with a Gaussian base of SNR_1/2 = 4; a 500-step bound classifier; 32 grid times, 200 images);
    explicit flags still override it, and the preset's base goes only with its label model."""
    from verify.cli import PRESETS, build_image_experiment, build_parser

    data = learned.load_mnist5k()
    parse = build_parser().parse_args
    e = build_image_experiment(parse(["images", "--cpu", "--dataset", "mnist5k", "--no-checkpoints"]), data)
    assert (e.unet.channels, e.unet.embed_dim, e.unet.num_groups) == (16, 64, 8)
    assert (e.train.steps, e.train.batch_size, e.train.lr, e.train.ema_decay) == (PRESETS["cpu"].steps, 64, 1e-3, 0.99)
    assert e.classifier.steps == 500 and e.classifier.channels == (32, 64)
    assert e.guidance_training == "separate" and (e.guidance.steps, e.guidance.channels) == (3000, (16, 32))
    assert e.guidance.hidden == e.classifier.hidden and e.gaussian_base is None
    assert (e.times.n_times, e.n_eval, e.chunk_size, e.sample_steps, e.per_class) == (32, 200, 32, 16, 2)
    assert e.cross_fit and e.posterior is None
    # Fashion-MNIST's preset adds the base (the experiment needs only the 28 x 28 shapes, so MNIST-5k's data stands in
    # for the data set's files)
    fashion = ["images", "--cpu", "--dataset", "fashion-mnist", "--no-checkpoints"]
    assert build_image_experiment(parse(fashion), data).gaussian_base == 4.0
    assert build_image_experiment(parse(fashion + ["--gaussian-base", "0"]), data).gaussian_base is None
    assert build_image_experiment(parse(fashion + ["--gaussian-base", "8"]), data).gaussian_base == 8.0
    e = build_image_experiment(parse(fashion + ["--no-guided"]), data)
    assert e.guidance is None and e.gaussian_base is None
    e = build_image_experiment(parse(fashion + ["--guidance-training", "joint"]), data)
    assert e.guidance_training == "joint" and e.guidance.steps == 500 and e.gaussian_base is None
    e = build_image_experiment(parse(["images", "--cpu", "--dataset", "mnist5k", "--steps", "7", "--n-eval", "9"]),
                               data)
    assert (e.train.steps, e.n_eval, e.train.steps_per_call) == (7, 9, 2)
    # without a preset: a label-embedding U-Net and no base
    e = build_image_experiment(parse(["images", "--dataset", "mnist5k", "--no-checkpoints"]), data)
    assert e.guidance is None and e.gaussian_base is None


def test_separate_guidance_flags_build_the_benchmarked_classifiers():
    """`--guided --guidance-training separate --guidance-steps N --guidance-channels C1 C2 --gaussian-base SNR` is the
    configuration of `benchmarks/bench_classifier_fisher.py --steps N --channels C1 C2 --gaussian-base SNR`: the noisy
    classifiers' steps and channels, the rest the bound classifier's; without the flags, the bound's architecture."""
    from verify.cli import build_image_experiment, build_parser

    data = learned.load_mnist5k()
    argv = ["images", "--dataset", "mnist5k", "--no-checkpoints", "--guided", "--guidance-training", "separate",
            "--guidance-steps", "3000"]
    e = build_image_experiment(build_parser().parse_args(argv + ["--guidance-channels", "16", "32",
                                                                 "--gaussian-base", "4"]), data)
    assert (e.guidance.steps, e.guidance.channels, e.guidance.hidden) == (3000, (16, 32), e.classifier.hidden)
    assert e.gaussian_base == 4.0 and e.guidance_training == "separate" and e.classifier.channels == (32, 64)
    e = build_image_experiment(build_parser().parse_args(argv), data)
    assert (e.guidance.steps, e.guidance.channels) == (3000, e.classifier.channels) and e.gaussian_base is None


def test_flags_apply_where_the_configuration_uses_them():
    """The other side of the refusals in test_bad_arguments_fail_before_any_work: each flag is taken where its
    configuration uses it, and leaving it out gives the defaults it had before it could be refused."""
    from verify.cli import build_image_experiment, build_parser, prepare_images
    from verify.estimators import LogSNRGrid, UniformGrid

    data = learned.load_digits()
    parse = build_parser().parse_args
    base = ["images", "--dataset", "digits", "--no-checkpoints"]
    e = build_image_experiment(parse(base + ["--training-times", "uniform"]), data)
    assert isinstance(e.time_sampler, learned.UniformTime) and isinstance(e.times, UniformGrid)
    e = build_image_experiment(parse(base + ["--train-s-min", "0.005"]), data)
    assert isinstance(e.time_sampler, learned.LogSNRTime) and e.time_sampler.s_min == 0.005
    assert isinstance(e.times, LogSNRGrid) and e.times.s_min == 0.005
    e = build_image_experiment(parse(base + ["--guided"]), data)
    assert (e.guidance_training, e.guidance_cross_entropy, e.guidance.channels) == ("joint", 1.0, (32, 64))
    e = build_image_experiment(parse(base + ["--guided", "--guidance-cross-entropy", "3", "--guidance-channels", "3",
                                             "5"]), data)
    assert (e.guidance_cross_entropy, e.guidance.channels) == (3.0, (3, 5))
    e = build_image_experiment(parse(base + ["--guided", "--guidance-training", "separate", "--guidance-steps", "7"]),
                               data)
    assert (e.guidance_training, e.guidance.steps) == ("separate", 7)
    with pytest.raises(ValueError, match="--guidance-steps applies only with --guided"):  # the API path checks too
        build_image_experiment(parse(base + ["--guidance-steps", "7"]), data)
    small, e = prepare_images(parse(base + ["--quick", "--n-train", "1500", "--n-eval", "297"]))
    assert (len(small.train_x), e.n_train, e.n_eval) == (1500, 1500, 297)
    small, e = prepare_images(parse(base + ["--quick", "--n-train", "40"]))
    np.testing.assert_array_equal(small.train_y, data.train_y[:40])
