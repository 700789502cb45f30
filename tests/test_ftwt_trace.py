"A faster training step must not change what FTWT computes: a few seeded steps against the stored reference trace."

from pathlib import Path
import pytest, torch
from ftwt_trace import CASES, trace

REF = torch.load(Path(__file__).parent / 'data' / 'ftwt_trace.pt', weights_only=True)


@pytest.mark.parametrize('case', CASES, ids=lambda c: '/'.join(map(str, c)))
def test_ftwt_steps_match_the_reference(case):
    torch.set_num_threads(1)
    got, ref = trace(*case), REF['/'.join(map(str, case))]
    # The first step starts from the recorded weights and must agree exactly. Later steps start from weights that
    # differ by float rounding between CPUs (ISA-dependent kernels): between two AMD EPYC VMs label ties of the heatmap
    # mass flipped from the third step on, and on a random MobileNetV2 27% of its step-3 labels differed. So only step
    # 1 is compared exactly, and later steps by their losses; checking every step across machines needs each step
    # replayed from the recorded weights (not done yet).
    for key in ('labels', 'masks'):
        assert torch.equal(got[key][0], ref[key][0]), key
    for key in ('loss', 'ce', 'mask_loss'):
        torch.testing.assert_close(torch.tensor(got[key][0]), torch.tensor(ref[key][0]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(ref[key]), rtol=2e-2, atol=1e-3)
    for key in ('out', 'logits'):
        torch.testing.assert_close(got[key][0], ref[key][0], rtol=1e-4, atol=1e-4)
    assert got['weights'].keys() == ref['weights'].keys()
