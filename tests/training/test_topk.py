import torch

from training.topk import stable_topk


def test_stable_topk_is_a_stable_sorts_head_for_any_k() -> None:
    generator = torch.Generator().manual_seed(0)
    for columns in (3, 10, 57, 260):
        scores = (torch.randint(-4, 4, (40, columns), generator=generator) / 3).float()  # many ties
        for value, share in ((float("-inf"), 0.1), (-0.0, 0.05), (1e-40, 0.05), (-1e-40, 0.05)):
            scores[torch.rand(40, columns, generator=generator) < share] = value  # -0.0 ties with 0.0
        order = scores.sort(dim=1, descending=True, stable=True).indices
        for k in (1, 10, 100):
            assert torch.equal(stable_topk(scores, k), order[:, :k])


def test_ties_keep_their_order_whatever_k_and_the_batch() -> None:
    # two probabilities equal to the last bit, as the service met them: the lower label first, in a top 10
    # and a top 100, alone and among other rows
    row = torch.linspace(0.0, 0.5, 200)
    row[[150, 40]] = 0.6300719380378723
    batch = torch.cat([torch.rand(127, 200, generator=torch.Generator().manual_seed(1)), row.unsqueeze(0)])
    for scores in (row.unsqueeze(0), batch):
        assert stable_topk(scores, 10)[-1, :2].tolist() == [40, 150]
        assert stable_topk(scores, 100)[-1, :2].tolist() == [40, 150]
