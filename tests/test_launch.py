"""The launch scripts, hermetically: stand-ins on PATH take the place of gcloud, srun and a TPU
worker. Printed commands are printf %q output, so tests shlex-split them and compare argvs."""
import os
import shlex
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU, SLURM, LOCAL = (os.path.join(REPO, "launch", name) for name in
                     ("tpu_vm.sh", "slurm_gpu.sbatch", "local_multiprocess.sh"))
SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone=us-central2-b"]
URL = "https://github.com/me/transformer-bert-jax.git"
BERT = "configs/bert_pretrain.py:size=base"


def write_exe(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(0o755)


@pytest.fixture
def sh(tmp_path):
    """Runs a script; a gcloud, srun or sbatch it reaches unasked fails the test."""
    for tool in ("gcloud", "srun", "sbatch"):
        write_exe(tmp_path / "never" / tool, f'touch "{tmp_path}/ran_{tool}"; exit 99\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in
           ("REPO_URL", "CONFIG", "WORKDIR", "DRY_RUN", "JAX_LOCAL_DEVICE_IDS")}

    def run(script, *args, path_first="", **extra_env):
        path = f"{path_first}:{tmp_path}/never:{env['PATH']}".lstrip(":")
        return subprocess.run(["bash", script, *args], capture_output=True, text=True,
                              cwd=REPO, env=dict(env, PATH=path, **extra_env), timeout=60)

    yield run
    assert not list(tmp_path.glob("ran_*")), "a real gcloud/srun/sbatch would have run"


def lines(result):
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def remote_of(argv):
    """The --command of a `gcloud ... ssh` argv: the shell text each worker runs."""
    return argv[-1].removeprefix("--command=")


def train_argv(argv):
    """The training program's argv inside `run`'s remote `nohup bash -c JOB` command."""
    words = shlex.split(remote_of(argv))
    job = shlex.split(words[words.index("nohup") + 3])
    return job[job.index("python3"):job.index(";", job.index("python3"))]


def test_create_prints_the_exact_gcloud_command(sh):
    zone = ["my-tpu", "--zone=us-central2-b"]
    assert sh(TPU, "--dry-run", "create", *zone, "--accelerator-type=v4-32").stdout == (
        "gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b "
        "--accelerator-type=v4-32 --version=tpu-ubuntu2204-base\n")
    [spot] = lines(sh(TPU, "--dry-run", "create", *zone, "--accelerator-type=v5p-64", "--spot",
                      "--version=v2-alpha-tpuv5"))
    assert spot[5:] == ["my-tpu", "--zone=us-central2-b", "--accelerator-type=v5p-64",
                        "--version=v2-alpha-tpuv5", "--spot"]


@pytest.mark.parametrize("how", ["env", "flag"])
def test_install_clones_and_pip_installs_on_every_worker(sh, how):
    args = ["--dry-run", "install", "my-tpu", "--zone=us-central2-b", "--ref=v1"]
    out = sh(TPU, *args)  # no repository: a one-line message says how to give one
    assert out.returncode == 2 and out.stdout == "" and out.stderr.count("\n") == 1
    assert "--repo=URL" in out.stderr and "REPO_URL" in out.stderr
    out = sh(TPU, *args, REPO_URL=URL) if how == "env" else sh(TPU, *args, f"--repo={URL}")
    [argv] = lines(out)
    assert argv[:-1] == SSH + ["--worker=all"]
    remote = remote_of(argv)
    assert f"git clone {URL} transformer_bert_jax" in remote and "git checkout v1;" in remote
    assert remote.endswith('python3 -m pip install -e ".[tpu]"')
    subprocess.run(["bash", "-n", "-c", remote], check=True)  # valid shell on the worker


@pytest.mark.parametrize("config,module", [
    (BERT, "bert_jax.main"), ("configs/transformer_wmt.py:size=big", "transformer_jax.main")])
def test_run_picks_the_program_and_passes_every_flag(sh, config, module):
    [argv] = lines(sh(TPU, "--dry-run", "run", "my-tpu", "--zone=us-central2-b", config,
                      "gs://bucket/run", "--config.data.source=tfds", "--config.batch_size=512",
                      "--", "--multihost_timeout=600"))
    assert argv[:-1] == SSH + ["--worker=all"]
    assert train_argv(argv) == [
        "python3", "-m", module, f"--config={config}", "--workdir=gs://bucket/run",
        "--multihost=on", "--config.data.source=tfds", "--config.batch_size=512",
        "--multihost_timeout=600"]
    assert ">> ~/train.log 2>&1 < /dev/null &" in remote_of(argv)


def test_run_refuses_a_workdir_off_cloud_storage(sh):
    out = sh(TPU, "--dry-run", "run", "my-tpu", "--zone=us-central2-b", BERT, "/tmp/bert_base")
    assert out.returncode != 0 and out.stdout == ""
    assert "a pod's workdir must be on Cloud Storage (gs://...)" in out.stderr
    ok = sh(TPU, "--dry-run", "run", "my-tpu", "--zone=us-central2-b", "--allow-local-workdir",
            BERT, "/tmp/bert_base")
    assert "--workdir=/tmp/bert_base" in train_argv(lines(ok)[0])


def test_logs_stop_and_delete(sh):
    zone = ["my-tpu", "--zone=us-central2-b"]
    assert lines(sh(TPU, "--dry-run", "logs", *zone)) == [
        SSH + ["--worker=0", "--command=tail -f ~/train.log"]]
    assert lines(sh(TPU, "--dry-run", "logs", *zone, "--worker=3"))[0][-2] == "--worker=3"
    [stop] = lines(sh(TPU, "--dry-run", "stop", *zone))
    assert stop[:-1] == SSH + ["--worker=all"] and "pkill -TERM" in remote_of(stop)
    assert sh(TPU, "--dry-run", "delete", *zone).stdout == (
        "gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet\n")


@pytest.mark.parametrize("args", [
    [], ["frob", "t", "--zone=z"], ["--bogus", "delete", "t"], ["delete", "t"],  # no --zone
    ["create", "t", "--zone=z"], ["delete", "t", "--zone=z", "--spot"],  # create's option
    ["run", "t", "--zone=z", BERT], ["logs", "a", "b", "--zone=z"]])
def test_usage_errors_exit_2(sh, args):
    out = sh(TPU, "--dry-run", *args)
    assert out.returncode == 2 and out.stdout == "" and "usage:" in out.stderr


@pytest.fixture
def worker(tmp_path):  # not a dry run: a stand-in gcloud runs --command in a fake worker's home
    write_exe(tmp_path / "fakes/gcloud", f'printf "%s\\n" "$@" > "{tmp_path}/gcloud_argv"\n'
              'for a; do case "$a" in --command=*) exec bash -c "${a#--command=}";; esac; done\n')
    (tmp_path / "home").mkdir()
    return tmp_path / "home", tmp_path / "fakes", tmp_path / "gcloud_argv"


def test_install_really_runs_on_a_worker(sh, worker):
    home, fakes, _ = worker
    write_exe(fakes / "git", 'echo "git $*" >> ~/calls; [ "$1" != clone ] || mkdir -p "$3/.git"'
              '\n[ "$1" != symbolic-ref ]\n')  # a detached checkout (a tag): nothing to merge
    write_exe(fakes / "python3", '[ "$1" != -c ] || exit 0\n'  # Python is new enough
              'if [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python3"\n'
              '  echo "PATH=$3/bin:\\$PATH" > "$3/bin/activate"; fi; echo "$0 $*" >> ~/calls\n')
    for _ in range(2):  # the second install only updates the clone
        out = sh(TPU, "install", "my-tpu", "--zone=z", f"--repo={URL}", "--ref=v1",
                 path_first=fakes, HOME=str(home))
        assert out.returncode == 0, out.stderr
    pip = [f"{home}/venv/bin/python3 -m pip install {a}" for a in ("-q -U pip", "-e .[tpu]")]
    update = ["git fetch --tags origin", "git checkout v1", "git symbolic-ref -q HEAD"]
    assert (home / "calls").read_text().splitlines() == [
        f"git clone {URL} transformer_bert_jax", *update, f"{fakes}/python3 -m venv {home}/venv",
        *pip, *update, *pip]


def test_run_really_starts_the_program_on_a_worker(sh, worker):
    home, fakes, gcloud_argv = worker
    (home / "transformer_bert_jax").mkdir()
    write_exe(home / "venv/bin/activate", 'export PATH="$HOME/venv/bin:$PATH"\n')
    write_exe(home / "venv/bin/pgrep", "exit 1\n")  # no earlier run still going
    write_exe(home / "venv/bin/python3", 'printf "%s\\n" "$@" > "$HOME/argv"; exit 75\n')
    flags = ["--config.data.input_files=gs://b/corpus/*.txt", "--config.name=two words $HOME"]
    args = ["run", "my-tpu", "--zone=us-central2-b", BERT, "gs://b/bert_base", *flags]
    out = sh(TPU, *args, path_first=fakes, HOME=str(home))
    assert out.returncode == 0, out.stderr
    [dry] = lines(sh(TPU, "--dry-run", *args))
    assert ["gcloud", *gcloud_argv.read_text().splitlines()] == dry
    log = home / "train.log"
    deadline = time.time() + 10  # the run is detached: wait for it to finish
    while "exit status" not in (log.read_text() if log.exists() else "") and time.time() < deadline:
        time.sleep(0.05)
    assert "exit status 75" in log.read_text()
    assert (home / "argv").read_text().splitlines() == [
        "-m", "bert_jax.main", f"--config={BERT}", "--workdir=gs://b/bert_base",
        "--multihost=on", *flags]
    # A second `run` while the first is still going would fight over the TPU: refused.
    write_exe(home / "venv/bin/pgrep", "exit 0\n")
    again = sh(TPU, *args, path_first=fakes, HOME=str(home))
    assert again.returncode != 0 and "a run is still going" in again.stderr


def test_slurm_dry_run_prints_the_srun_line(sh):
    out = sh(SLURM, "--config.batch_size=256", CONFIG=BERT, WORKDIR="/shared/run", DRY_RUN="1")
    assert out.stdout == (f"srun python3 -m bert_jax.main --config={BERT} "
                          "--workdir=/shared/run --multihost=on --config.batch_size=256\n")
    # In a job, one process per node drives all the node's GPUs (JAX would give it one).
    [argv] = lines(sh(SLURM, CONFIG="configs/transformer_wmt.py", WORKDIR="/w", DRY_RUN="1",
                      SLURM_GPUS_ON_NODE="8"))
    assert argv == ["env", "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7", "srun", "python3", "-m",
                    "transformer_jax.main", "--config=configs/transformer_wmt.py",
                    "--workdir=/w", "--multihost=on"]
    out = sh(SLURM, WORKDIR="/shared/run", DRY_RUN="1")  # no CONFIG
    assert out.returncode == 2 and out.stdout == "" and "set CONFIG and WORKDIR" in out.stderr


def test_local_multiprocess_dry_run(sh):
    tiny, xla = "configs/bert_pretrain.py:size=tiny", "--xla_force_host_platform_device_count=4"
    out = lines(sh(LOCAL, "--dry-run", "--port=1234", "2", "4", tiny, "/tmp/w",
                   "--config.num_train_steps=5"))
    assert out == [["env", "JAX_PLATFORMS=cpu", f"XLA_FLAGS={xla}", "python3", "-m",
                    "bert_jax.main", f"--config={tiny}", "--workdir=/tmp/w", "--multihost=on",
                    "--coordinator_address=127.0.0.1:1234", "--num_processes=2",
                    f"--process_id={i}", "--config.num_train_steps=5"] for i in (0, 1)]
    # The caller's XLA flags reach each process; the device count is the script's own.
    mine = "--xla_dump_to=/tmp/hlo --xla_force_host_platform_device_count=8 --xla_cpu_ftz=true"
    [first, _] = lines(sh(LOCAL, "--dry-run", "2", "4", tiny, "/tmp/w", XLA_FLAGS=mine))
    assert first[2] == f"XLA_FLAGS=--xla_dump_to=/tmp/hlo --xla_cpu_ftz=true {xla}"


def test_gpu_bench_runs_four_bf16_benches_per_attention_core_that_parse(sh):
    """Each printed command is accepted by the bench's own flags and config (checked in a
    child process, as absl flags are process-wide): base and large at 128 and 512, bf16,
    with cuDNN attention (no attention dropout) and then BERT's recipe."""
    argvs = lines(sh(os.path.join(REPO, "launch", "gpu_bench.sh"), "--dry-run",
                     BATCHES="7 5 3 1"))
    parse = ("import sys; from absl import flags; from bert_jax import bench; "
             "bench.define_flags(); from transformer_jax import runtime; "
             "from bert_jax.pretraining.task import bert_config; "
             "runtime.parse_flags(sys.argv); c = flags.FLAGS.config; "
             "m = bert_config(c, 30522); "
             "print(c.model.size, c.data.max_seq_length, m.dtype, m.attention_implementation, "
             "m.attention_dropout, flags.FLAGS.batch_size, flags.FLAGS.compare_hf, "
             "flags.FLAGS.peak_size)")
    parsed = []
    for argv in argvs:
        assert argv[:3] == ["python3", "-m", "bert_jax.bench"]
        result = subprocess.run(["python3", "-c", parse, *argv[3:]], capture_output=True,
                                text=True, cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        parsed.append(result.stdout.split())
    runs = [["base", "128", "7"], ["large", "128", "5"], ["base", "512", "3"],
            ["large", "512", "1"]]
    assert parsed == (
        [[size, seq, "bfloat16", "cudnn", "0.0", batch, "no", "8192"]
         for size, seq, batch in runs]
        + [[size, seq, "bfloat16", "einsum", "0.1", batch, "no", "8192"]
           for size, seq, batch in runs])
    one_core = lines(sh(os.path.join(REPO, "launch", "gpu_bench.sh"), "--dry-run",
                        BATCHES="7 5 3 1", ATTENTION="einsum"))
    assert one_core == argvs[4:]
    wrong = sh(os.path.join(REPO, "launch", "gpu_bench.sh"), "--dry-run", ATTENTION="flash")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr == ("gpu_bench: unknown attention core 'flash' in ATTENTION; "
                            "use cudnn, einsum or xla\n")
    empty = sh(os.path.join(REPO, "launch", "gpu_bench.sh"), "--dry-run", ATTENTION=" ")
    assert empty.returncode == 2 and empty.stdout == "" and "ATTENTION is empty" in empty.stderr


def test_gpu_bench_runs_every_bench_when_one_fails_and_then_exits_1(sh, tmp_path):
    """An out-of-memory run (large at 128 here) does not cost the runs after it; the
    failures are named at the end, with the exit code, and the script fails."""
    log = tmp_path / "argvs"
    write_exe(tmp_path / "fake" / "python3",
              f'echo "$XLA_PYTHON_CLIENT_MEM_FRACTION $*" >> "{log}"\n'
              'case "$*" in *"size=large --"*) exit 3;; esac\n')
    result = sh(os.path.join(REPO, "launch", "gpu_bench.sh"), path_first=str(tmp_path / "fake"),
                BATCHES="7 5 3 1")
    assert result.returncode == 1
    ran = log.read_text().splitlines()
    assert len(ran) == 8 and all(line.startswith("0.95 -m bert_jax.bench") for line in ran)
    assert result.stderr.splitlines()[:2] == [
        "gpu_bench: failed: size=large batch 5 cudnn (exit 3)",
        "gpu_bench: failed: size=large batch 5 einsum (exit 3)"]
