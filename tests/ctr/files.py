"""Hand-made MovieLens-1M and Criteo files for the CTR tests."""

from __future__ import annotations

from pathlib import Path

USERS = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117"]
MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Heat (1995)::Action|Crime|Thriller",
    "3::Star Wars: Episode IV - A New Hope (1977)::Comedy|Animation|Children's",
]
# user::movie::rating::timestamp; the first rating of the file is at t = 1000
RATINGS = [
    "1::1::5::1000",
    "1::2::3::1001",
    "2::1::1::1002",
    "2::3::4::1010",
    "3::2::2::1100",
    "3::3::5::100000",
    "1::3::4::1003",
    "2::2::5::1000",
]


def write_lines(path: Path, lines: list[str], encoding: str = "latin-1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding=encoding)
    return path


def write_movielens(root: Path, ratings=RATINGS, users=USERS, movies=MOVIES, name="ratings.dat"):
    """A movielens-1m/ folder under `root`; returns `root` (the data_dir)."""
    folder = root / "movielens-1m"
    write_lines(folder / name, ratings)
    write_lines(folder / "users.dat", users)
    write_lines(folder / "movies.dat", movies)
    return root


def criteo_line(label: str, ints: dict[int, str] | None = None, cats: dict[int, str] | None = None):
    """One Kaggle-layout line: label, I1..I13, C1..C26 (1-based indices; others empty)."""
    ints, cats = ints or {}, cats or {}
    fields = (
        [label] + [ints.get(i, "") for i in range(1, 14)] + [cats.get(i, "") for i in range(1, 27)]
    )
    return "\t".join(fields)
