"""Where the published datasets come from: URLs, file names and the checksums published with them.

Data only. The checksums are the ones the datasets' hosts publish (and torchvision
checks); a file that does not match is never read. `mirror` replaces the official
host for every file (an internal mirror, a local copy served over HTTP, a test).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name, on the server and under data_dir/<dataset>/
    url: str  # official location
    digest: str  # hex digest of the whole file
    algorithm: str = "md5"  # any hashlib name: md5 (what CIFAR, MNIST and SVHN publish), sha256

    def url_from(self, mirror: str | None) -> str:
        return f"{mirror.rstrip('/')}/{self.name}" if mirror else self.url


@dataclass(frozen=True)
class Source:
    files: tuple[RemoteFile, ...]
    homepage: str

    def file(self, name: str) -> RemoteFile:
        return next(f for f in self.files if f.name == name)

    def with_digests(self, digests: dict[str, str]) -> Source:
        """The same files checked against other digests: for archives you wrote yourself (tests, benchmarks)."""
        unknown = set(digests) - {f.name for f in self.files}
        if unknown:
            raise ValueError(f"no file named {sorted(unknown)} in this source")
        return replace(self, files=tuple(replace(f, digest=digests.get(f.name, f.digest)) for f in self.files))


_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses; yann.lecun.com no longer serves them
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"


def _idx_files(base: str, md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(name, base + name, md5) for name, md5 in zip(names, md5s, strict=True))


SOURCES: dict[str, Source] = {
    "cifar10": Source(
        (RemoteFile("cifar-10-python.tar.gz", _TORONTO + "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Source(
        (RemoteFile("cifar-100-python.tar.gz", _TORONTO + "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "mnist": Source(
        _idx_files(
            _MNIST,
            ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432", "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": Source(
        _idx_files(
            _FASHION,
            ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe", "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "svhn": Source(
        (
            RemoteFile("train_32x32.mat", _SVHN + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            RemoteFile("test_32x32.mat", _SVHN + "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
            RemoteFile("extra_32x32.mat", _SVHN + "extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),  # only with dataset.extra=true
        ),
        "http://ufldl.stanford.edu/housenumbers/",
    ),
}
