"""The object classes: every combination of a shape, a colour and a surface texture."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

SHAPES = ("circle", "ellipse", "triangle", "square", "pentagon", "hexagon", "star", "cross", "ring", "crescent")
# Hues (degrees) far enough apart to survive the lighting casts and hue jitter the nuisances apply.
COLOURS = {"red": 0.0, "yellow": 55.0, "green": 120.0, "cyan": 185.0, "blue": 235.0, "magenta": 300.0}
TEXTURES = ("solid", "stripes", "checker", "dots")


@dataclass(frozen=True)
class Catalogue:
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    textures: tuple[str, ...] = TEXTURES

    @property
    def num_classes(self) -> int:
        return len(self.shapes) * len(self.colours) * len(self.textures)

    def decompose(self, class_id):
        """class id -> (shape index, colour index, texture index); works on ints and numpy arrays."""
        nt, nc = len(self.textures), len(self.colours)
        return class_id // (nc * nt), (class_id // nt) % nc, class_id % nt

    def class_id(self, shape: int, colour: int, texture: int) -> int:
        return (shape * len(self.colours) + colour) * len(self.textures) + texture

    def names(self) -> list[str]:
        return [f"{c}-{t}-{s}" for s, c, t in product(self.shapes, self.colours, self.textures)]


CATALOGUE = Catalogue()
