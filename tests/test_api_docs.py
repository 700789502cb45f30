"""Every public function, class and method of hebbnb has a docstring, and every parameter of a public function a
docments comment beside it in the signature (house style, STYLE.md 6).

Exceptions, by design:
- names starting with `_`, and names a module imports rather than defines (checked where they are defined);
- `self`, `cls`, `*args` and `**kwargs` (documented by the function's own docstring);
- dunder methods, and `__init__` of a dataclass or NamedTuple (generated: the fields carry the comments);
- the `forward` of a torch module, whose input is documented by the shape comment of the class.

`tests/data/api_docs_gaps.txt` lists the gaps found when this test was written (issue 13, item 9). It may only
shrink: a new gap fails, and so does a listed gap that has been fixed (delete its line).
"""

import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from fastcore.docments import docments

import hebbnb

MODULES = sorted(m.name for m in pkgutil.iter_modules(hebbnb.__path__) if not m.name.startswith('_'))
SKIP_PARAMS = {'self', 'cls'}
GAPS = Path(__file__).parent / 'data' / 'api_docs_gaps.txt'


def _public(mod):
    "Public functions and classes defined in `mod` itself (not imported into it)."
    for name, obj in vars(mod).items():
        if name.startswith('_') or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, '__module__', None) == mod.__name__:
            yield name, obj


def _methods(cls):
    "Public methods defined in the body of `cls`."
    for name, obj in vars(cls).items():
        fn = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
        if not name.startswith('_') and inspect.isfunction(fn) and fn.__qualname__.startswith(cls.__qualname__ + '.'):
            yield name, fn


def _undocumented_params(fn):
    "Names of `fn`'s parameters without a docments comment."
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    docs = docments(fn)
    return [
        p.name
        for p in sig.parameters.values()
        if p.name not in SKIP_PARAMS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not docs.get(p.name)
    ]


def problems(mod):
    "One line per missing docstring or parameter comment in module `mod`."
    out = []
    for name, obj in _public(mod):
        if not inspect.getdoc(obj) or (inspect.isclass(obj) and obj.__doc__ is None):
            out.append(f'{name}: no docstring')
        if inspect.isfunction(obj):
            out += [f'{name}({p}): no comment beside the parameter' for p in _undocumented_params(obj)]
        if inspect.isclass(obj):
            for mname, fn in _methods(obj):
                if fn.__doc__ is None and mname != 'forward':
                    out.append(f'{name}.{mname}: no docstring')
            generated = dataclasses.is_dataclass(obj) or issubclass(obj, tuple)
            init = vars(obj).get('__init__')
            if init is not None and not generated and inspect.isfunction(init):
                out += [f'{name}({p}): no comment beside the parameter' for p in _undocumented_params(init)]
    return out


@pytest.mark.parametrize('name', MODULES)
def test_public_api_is_documented(name):
    mod = importlib.import_module(f'hebbnb.{name}')
    known = {line.split(' ', 1)[1] for line in GAPS.read_text().splitlines() if line.startswith(f'{name} ')}
    found = set(problems(mod))
    assert sorted(found - known) == [], 'document these (docstring; a comment beside each parameter)'
    assert sorted(known - found) == [], f'fixed: delete these lines of {GAPS.name}'


def test_checker_fails_on_undocumented_function(tmp_path, monkeypatch):
    "The checker is not vacuous: a function without docs is reported, a documented one is not."
    (tmp_path / 'fake_api.py').write_text(
        'def f(a, b=1):\n    return a\n\n\ndef g(a,  # documented\n      ):\n    "Doc."\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module('fake_api')
    assert problems(mod) == [
        'f: no docstring',
        'f(a): no comment beside the parameter',
        'f(b): no comment beside the parameter',
    ]
