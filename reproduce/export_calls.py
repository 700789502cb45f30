"""Where the export's batch-1 time goes (issue 15): wall ms per image (median of 50 CIFAR-10 training images, 1 thread)
and ATen calls per image of the dense twin and of the export, for random-weight stand-ins with the trained ResNet-20's
filter usage (as reproduce/speedup.sh). Prints one line per model; run it on an idle machine:
    HEBBNB_DATA=../shared/data python reproduce/export_calls.py
"""

import time, collections, torch
from hebbnb.bench import usage_gated, _images
from hebbnb.export import export_pruned, _dense_twin
from hebbnb.models import input_size

torch.set_num_threads(1)
for arch in ('resnet56', 'mobilenetv2', 'resnet20'):
    x, _ = _images('cifar10', input_size(arch), None, 306, 'train', 1)
    model = usage_gated(arch, 0.31, 0.50, 0.45, x=x[:256], seed=0)
    net, _, _ = export_pruned(model, x[:256].split(128))
    res = {}
    for name, f in (('dense', _dense_twin(model, 3).eval()), ('export', net.eval())):
        with torch.inference_mode():
            for xi in x[256:266]:
                f(xi[None])
            ts = []
            for xi in x[256:306]:
                t0 = time.perf_counter()
                f(xi[None])
                ts.append(time.perf_counter() - t0)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                f(x[256:257])
        calls = collections.Counter({e.key: e.count for e in prof.key_averages() if e.key.startswith('aten::')})
        res[name] = (1e3 * sorted(ts)[len(ts) // 2], calls)
    (md, cd), (me, ce) = res['dense'], res['export']
    extra = {k[6:]: ce[k] - cd.get(k, 0) for k in ce if ce[k] - cd.get(k, 0) > 0}
    top = ', '.join(f"{k} +{v}" for k, v in sorted(extra.items(), key=lambda kv: -kv[1])[:8])
    print(
        f"{arch}: dense {md:.2f} ms, export {me:.2f} ms (median of 50 images); aten calls per image "
        f"{sum(cd.values())} -> {sum(ce.values())}; extra in the export: {top}"
    )
