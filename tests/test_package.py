"""A plain `pip install` carries everything the commands need: wheel + sdist built, checked, installed into a fresh
venv, run from elsewhere."""

import io, os, subprocess, sys, tarfile, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_PY = Path(sys.base_prefix) / 'bin' / 'python3'  # the interpreter the dev venv was made from


def run(*cmd, **kw):
    kw.setdefault('env', {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')})
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=kw.pop('timeout', 600), **kw)


def base_has_dependencies() -> bool:
    return (
        BASE_PY.exists() and run(BASE_PY, '-c', 'import torch, torchvision, matplotlib, seaborn, tqdm').returncode == 0
    )


@pytest.fixture(scope='module')
def dist_dir(tmp_path_factory):
    "sdist and wheel of the working tree; the wheel is built from the sdist, so the sdist must be complete."
    out = tmp_path_factory.mktemp('dist')
    r = run(sys.executable, '-m', 'build', '--no-isolation', '--outdir', out, ROOT, cwd=out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def test_sdist_and_wheel_carry_recipes_and_baseline(dist_dir):
    (whl,) = dist_dir.glob('*.whl')
    (sdist,) = dist_dir.glob('*.tar.gz')
    names = set(zipfile.ZipFile(whl).namelist())
    assert {
        'hebbnb/configs/cifar10_resnet56.json',
        'hebbnb/configs/imagenet_resnet18.json',
        'hebbnb/checkpoints/cifar10_resnet20_baseline.pt',
        'hebbnb/measured/cifar10_resnet20.csv',  # the results hebbnb-estimate's note and the quickstart's help quote
    } <= names
    snames = {n.split('/', 1)[1] for n in tarfile.open(sdist).getnames() if '/' in n}
    assert {
        'hebbnb/configs/cifar10_resnet20.json',
        'hebbnb/checkpoints/cifar10_resnet20_baseline.pt',
        'hebbnb/measured/cifar10_resnet20.csv',
        'README.md',
        'LICENSE',
    } <= snames
    with zipfile.ZipFile(whl) as z:  # the estimate note, computed from the wheel's copy of the measured results
        wheel_csv = z.read('hebbnb/measured/cifar10_resnet20.csv')
    from hebbnb.cli import MEASURED, estimate_note
    from hebbnb.results import read_rows, realised_note

    assert wheel_csv == MEASURED.read_bytes()
    assert realised_note(read_rows(io.StringIO(wheel_csv.decode(), newline=''))) == estimate_note()
    r = run(sys.executable, '-m', 'twine', 'check', '--strict', *dist_dir.iterdir())
    assert r.returncode == 0 and r.stdout.count('PASSED') == 2, r.stdout + r.stderr


@pytest.mark.skipif(
    not base_has_dependencies(),
    reason=f'{BASE_PY} lacks torch & co. (the fresh venv reuses them instead of downloading)',
)
def test_installed_wheel_runs_from_another_folder(dist_dir, tmp_path):
    "Fresh venv (--system-site-packages: the base's torch & co., no download), the wheel only, run elsewhere."
    # --no-deps: the base's torch wheel pins CUDA packages that are not installed there; the imports below prove the
    # dependencies present
    env = tmp_path / 'venv'
    assert run(BASE_PY, '-m', 'venv', '--system-site-packages', env).returncode == 0
    (whl,) = dist_dir.glob('*.whl')
    r = run(env / 'bin' / 'python', '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', whl)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / 'elsewhere'
    work.mkdir()
    r = run(
        env / 'bin' / 'hebbnb-baseline',
        '--config',
        'cifar10_resnet20',
        '--dataset',
        'synthetic',
        '--epochs',
        '1',
        '--max-steps',
        '2',
        '--threads',
        '1',
        '--no-progress',
        '--out',
        'x',
        cwd=work,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"lr": 0.1' in r.stdout and '"schedule": "cosine"' in r.stdout  # the recipe's baseline section was read
    r = run(env / 'bin' / 'hebbnb-quickstart', '--help', cwd=work)
    assert r.returncode == 0 and '--fast' in r.stdout and '--train-baseline' in r.stdout
    assert '% top-1, ' in ' '.join(r.stdout.split())  # the shipped baseline's figures, read from the installed CSV
    code = (
        "import hebbnb, importlib, pkgutil, sys\n"
        "assert hebbnb.__file__.startswith(sys.prefix), hebbnb.__file__\n"
        "mods = [importlib.import_module(f'hebbnb.{m.name}') for m in pkgutil.iter_modules(hebbnb.__path__)]\n"
        "from hebbnb.cli import shipped_checkpoint, find_config\n"
        "from hebbnb.train import load_checkpoint\n"
        "assert load_checkpoint(shipped_checkpoint())['best_top1'] == 87.46\n"
        "from hebbnb.cli import MEASURED, estimate_note, measured_baseline\n"
        "assert MEASURED.is_file() and str(MEASURED).startswith(sys.prefix), MEASURED\n"
        "assert 'less than the dense estimate' in estimate_note() and 'hebbnb-train --no-softmax' in estimate_note()\n"
        "assert measured_baseline()['top1'] == load_checkpoint(shipped_checkpoint())['best_top1']\n"
        "print(len(mods), find_config('imagenet_resnet34'))\n"
    )
    r = run(env / 'bin' / 'python', '-c', code, cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[0]) >= 10 and str(env) in r.stdout
