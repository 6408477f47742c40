"""The dataset family file (datasets/*.yaml): one pydantic model per kind of domain.

A family names its classes (their order is the label order) and its domains. Each domain
says how its data is found: `embedded` (built from installed packages), `image_folder`
(one sub-folder per class), `image_list` (DomainNet's `path label` lists), `camelyon17`
(WILDS's metadata.csv of histopathology patches), or one of the published digit formats.
Where a domain is read from the data root, `root` (its folder under the data root), `layout`
(printed when data is missing), `homepage` (where to get it) and `licence` may be set on the
family as defaults or on the domain, so one family file can mix embedded and published
domains.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmark.suite.config import safe_name

LOCATION_FIELDS = ("root", "layout", "homepage", "licence")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddedEntry(_Strict):
    """Built by a registered builder from data an installed package ships (embedded.py)."""

    kind: Literal["embedded"]
    builder: str
    images: int
    package: str
    source: str
    licence: str
    split_group: str | None = None


class PublishedEntry(_Strict):
    """What every domain read from the data root shares; unset location fields come from the
    family. `images` is the expected count (train + test), checked by `xdkd datasets check`."""

    images: int = Field(ge=0)
    source: str | None = None
    root: str | None = None
    layout: str | None = None
    homepage: str | None = None
    licence: str | None = None


class ImageFolderEntry(PublishedEntry):
    """`path` (under `root`) holds one sub-folder per class; no official split, so a seeded
    stratified 80/20 train/test split is drawn from the domain name, as for embedded ones."""

    kind: Literal["image_folder"]
    path: str


class ImageListEntry(PublishedEntry):
    """DomainNet (Peng et al. 2019): list files of `relative/path.jpg LABEL` lines, paths under
    `path`, lists under `root`; the official train/test split."""

    kind: Literal["image_list"]
    path: str = "."
    train_list: str
    test_list: str


class MnistIdxEntry(PublishedEntry):
    """MNIST's idx files (LeCun et al. 1998) where torchvision puts them: `root`/MNIST/raw/."""

    kind: Literal["mnist_idx"]


class UspsBz2Entry(PublishedEntry):
    """USPS (Hull 1994) as LIBSVM's usps.bz2 / usps.t.bz2 under `root` (torchvision's format)."""

    kind: Literal["usps_bz2"]


class SvhnMatEntry(PublishedEntry):
    """SVHN's MATLAB files (Netzer et al. 2011); Ganin et al. (2016) publish SynDigits in the
    same format under other names, hence the configurable file names."""

    kind: Literal["svhn_mat"]
    train_file: str = "train_32x32.mat"
    test_file: str = "test_32x32.mat"


class MnistmFolderEntry(PublishedEntry):
    """MNIST-M as Ganin et al. (2016) publish it: mnist_m_{train,test}/ PNGs and
    mnist_m_{train,test}_labels.txt (`00000000.png 5` lines) under `root`."""

    kind: Literal["mnistm_folder"]


class Camelyon17Entry(PublishedEntry):
    """One hospital of Camelyon17-WILDS (Koh et al. 2021; Bandi et al. 2018): the rows of
    `metadata` (WILDS v1.0's metadata.csv, under `root`) whose `center` is this one, each a
    96x96 patch under patches/. WILDS splits by hospital, not within one, so a seeded
    stratified 80/20 train/test split is drawn from the domain name, as for image folders."""

    kind: Literal["camelyon17"]
    center: int = Field(ge=0)
    metadata: str = "metadata.csv"


DomainEntry = Annotated[
    EmbeddedEntry
    | ImageFolderEntry
    | ImageListEntry
    | MnistIdxEntry
    | UspsBz2Entry
    | SvhnMatEntry
    | MnistmFolderEntry
    | Camelyon17Entry,
    Field(discriminator="kind"),
]


class FamilyFile(_Strict):
    family: str
    description: str = ""
    classes: list[str] = Field(min_length=1)
    root: str | None = None
    layout: str | None = None
    homepage: str | None = None
    licence: str | None = None
    domains: dict[str, DomainEntry]

    @model_validator(mode="after")
    def _locations_known(self) -> FamilyFile:
        safe_name(self.family, "family name")
        for name in self.domains:
            safe_name(name, "domain name")  # domain names become cache folder names
        for name, entry in self.domains.items():
            if isinstance(entry, PublishedEntry):
                unset = [
                    f
                    for f in LOCATION_FIELDS
                    if getattr(entry, f) is None and getattr(self, f) is None
                ]
                if unset:
                    raise ValueError(
                        f"domain '{name}' needs {', '.join(unset)} (on the domain or the family)"
                    )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes are not unique")
        return self

    def resolved(self, name: str) -> EmbeddedEntry | PublishedEntry:
        """The domain's entry with the family's location fields filled in where it has none."""
        entry = self.domains[name]
        if isinstance(entry, EmbeddedEntry):
            return entry
        defaults = {f: getattr(self, f) for f in LOCATION_FIELDS if getattr(entry, f) is None}
        return entry.model_copy(update=defaults)
