"""Grids and PNGs: cells land where a plain loop would put them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sgan_cli.images import atoms_to_images, make_grid, save_png, to_uint8


def test_make_grid_matches_a_loop():
    imgs = torch.randint(1, 255, (7, 3, 4, 5), dtype=torch.uint8)
    grid = make_grid(imgs, nrow=3, pad=2)
    assert grid.shape == (3, 3 * (4 + 2) + 2, 3 * (5 + 2) + 2)
    for i in range(7):
        r, c = divmod(i, 3)
        y, x = 2 + r * 6, 2 + c * 7
        assert torch.equal(grid[:, y : y + 4, x : x + 5], imgs[i])
    assert int(grid[:, 2 + 2 * 6 :, 2 + 7 :].sum()) == 0  # empty cells stay black


def test_scale_and_png_round_trip(tmp_path):
    imgs = to_uint8(torch.linspace(-1, 1, 2 * 9).view(2, 1, 3, 3))
    grid = make_grid(imgs, scale=4, pad=1)
    assert grid.shape == (1, 1 + 12 + 1, 2 * 13 + 1)
    save_png(grid, tmp_path / "g.png")
    back = torch.from_numpy(np.asarray(Image.open(tmp_path / "g.png")).copy())
    assert torch.equal(back, grid[0])


def test_atoms_are_stretched_per_atom():
    atoms = torch.tensor([[0.0, 0.5, 1.0, 0.25], [-2.0, 0.0, 2.0, -1.0]])
    pics = atoms_to_images(atoms, 1, 2)
    assert pics.shape == (2, 1, 2, 2)
    assert int(pics[0].min()) == 0 and int(pics[0].max()) == 255 and int(pics[1].max()) == 255
