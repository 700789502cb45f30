"A faster training step must not change what FTWT computes: a few seeded steps against the stored reference trace."

from pathlib import Path
import pytest, torch
from ftwt_trace import CASES, trace

REF = torch.load(Path(__file__).parent / 'data' / 'ftwt_trace.pt', weights_only=True)


@pytest.mark.parametrize('case', CASES, ids=lambda c: '/'.join(map(str, c)))
def test_ftwt_steps_match_the_reference(case):
    torch.set_num_threads(1)
    got, ref = trace(*case), REF['/'.join(map(str, case))]
    for key in ('labels', 'masks'):
        assert all(torch.equal(a, b) for a, b in zip(got[key], ref[key])), key
    assert torch.equal(got['eval_masks'], ref['eval_masks'])
    for key in ('loss', 'ce', 'mask_loss'):
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(ref[key]), rtol=1e-5, atol=1e-6)
    for key in ('out', 'logits'):
        for a, b in zip(got[key], ref[key]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for key in ('eval_out', 'macs', 'macs_paper'):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-4)
    assert got['weights'].keys() == ref['weights'].keys()
    for k in ref['weights']:
        torch.testing.assert_close(got['weights'][k], ref['weights'][k], rtol=1e-4, atol=1e-4, msg=k)
