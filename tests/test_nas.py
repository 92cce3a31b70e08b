"""The weight-sharing supernet and Kendall's tau (chapter 08)."""

import pytest
import torch
from scipy.stats import kendalltau

import shared_lib as sl
from shared_lib.nas import SupernetMLP, kendall_tau, train_standalone, train_supernet


def test_search_space_and_sampling():
    net = SupernetMLP(5, 3, widths=(2, 4), activations=("relu", "tanh"), n_layers=2)
    space = net.search_space()
    assert len(space) == 16 and len(set(space)) == 16
    generator = torch.Generator().manual_seed(0)
    assert all(net.sample(generator) in space for _ in range(20))


def test_sub_networks_share_slices_of_the_same_weights():
    torch.manual_seed(0)
    net = SupernetMLP(5, 3, widths=(2, 4), n_layers=2)
    x = torch.randn(7, 5)
    arch = ((2, "relu"), (4, "tanh"))
    h = torch.relu(x @ net.hidden[0].weight[:2, :5].T + net.hidden[0].bias[:2])
    h = torch.tanh(h @ net.hidden[1].weight[:4, :2].T + net.hidden[1].bias[:4])
    expected = h @ net.readout.weight[:, :4].T + net.readout.bias
    torch.testing.assert_close(net(x, arch), expected)
    # a gradient step of one architecture changes the weights the other ones use
    net(x, arch).sum().backward()
    assert net.hidden[1].weight.grad[:4, :2].abs().sum() > 0
    assert net.hidden[1].weight.grad[:, 2:].abs().sum() == 0
    assert sl.count_parameters(net) == (5 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3)


def test_standalone_has_the_architecture_shape():
    net = SupernetMLP(5, 3, widths=(2, 4), n_layers=2)
    model = net.standalone(((4, "tanh"), (2, "relu")))
    assert model(torch.randn(3, 5)).shape == (3, 3)
    assert sl.count_parameters(model) == (5 * 4 + 4) + (4 * 2 + 2) + (2 * 3 + 3)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and a loaded CI box makes more threads slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_improves_accuracy(one_thread):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    net = SupernetMLP(4, 2, widths=(4, 8), n_layers=1)
    train_supernet(net, x, y, steps=100, lr=0.05, batch_size=64, seed=0)
    assert net.accuracy(x, y, ((8, "relu"),)) > 0.9
    model = train_standalone(net.standalone(((4, "tanh"),)), x, y, steps=100, lr=0.05, seed=0)
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_kendall_tau_matches_scipy_with_and_without_ties():
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        a = torch.randint(0, 5, (12,), generator=generator).tolist()
        b = torch.randint(0, 5, (12,), generator=generator).tolist()
        assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b)[0])
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="activations"):
        SupernetMLP(4, 2, activations=("gelu",))
    with pytest.raises(ValueError, match="widths"):
        SupernetMLP(4, 2, widths=())
    net = SupernetMLP(4, 2, widths=(2, 4), n_layers=1)
    with pytest.raises(ValueError, match="arch"):
        net(torch.randn(2, 4), ((3, "relu"),))
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="constant"):
        kendall_tau([1, 1, 1], [1, 2, 3])
