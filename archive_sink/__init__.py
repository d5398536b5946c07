"""The archive sink: builds verified archive packages (content + DA/T 94 metadata XML + BagIt
SHA-256 and SM3 manifests) and publishes them atomically to a store (filesystem; S3 later)."""

from archive_sink.filesystem import FilesystemArchive
from archive_sink.package import ArchivePackage, PackageFile, build_package

__all__ = ["ArchivePackage", "FilesystemArchive", "PackageFile", "build_package"]
