"""The member's commands about pictures and files on posts: attaching files to a post,
seeing and setting the limits (`kithnet blobs`), and saving an attachment to a file
(`kithnet attachment save`). Mixed into `Commands`."""

from __future__ import annotations

import errno
import hashlib
import mimetypes
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from kithnet.core.errors import RecordError
from kithnet.localstore.blobs import HARD_MAX_SIZE, Attachment, BlobBusy, BlobTooBig, parse_size
from kithnet.localstore.errors import StoreError
from kithnet.node.blobs import BlobError

if TYPE_CHECKING:
    from kithnet.localstore.store import Store
    from kithnet.node.node import Node

MAX_ATTACHMENTS = 8
MAX_NAME_BYTES = 200
SERVE_WAIT = 30.0  # a node started for one post waits this long for members to fetch
SHOW_MAX_SIZE = 16 * 1024 * 1024  # `attachment.data` gives the bytes of files up to this size


def _error(message: str) -> Exception:
    from kithnet.node.commands import CommandError

    return CommandError(message)


def attachment_view(attachment: Attachment) -> dict[str, Any]:
    return {
        "index": attachment.index + 1,
        "hash": attachment.hash.hex(),
        "name": attachment.name,
        "mime": attachment.mime,
        "size": attachment.size,
        "state": attachment.state,
    }


def _file_name(path: Path) -> str:
    name = path.name
    while len(name.encode()) > MAX_NAME_BYTES:
        name = name[:-1]
    return name


def _place(partial: Path, target: Path) -> None:
    """Put a finished file at `target`, never over a file that appeared there: a hard
    link where the file system has them, else an exclusive create and a copy."""
    try:
        os.link(partial, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    with partial.open("rb") as source, target.open("xb") as out:
        shutil.copyfileobj(source, out)
        out.flush()
        os.fsync(out.fileno())


class BlobCommands:
    node: Node
    store: Store
    temporary: bool

    def store_attachments(
        self, files: Sequence[str], added: list[bytes] | None = None
    ) -> list[dict[str, Any]]:
        """Store each file as a blob (refusing what is over the limits) and return the
        post's `attachments` field for them; the blobs stored anew are appended to
        `added` (to be forgotten if the post is not made: `forgetting_unposted`)."""
        if len(files) > MAX_ATTACHMENTS:
            raise _error(f"a post can carry at most {MAX_ATTACHMENTS} files")
        added = [] if added is None else added
        with self.forgetting_unposted(added):
            return self._store_files(files, added)

    @contextmanager
    def forgetting_unposted(self, added: list[bytes]) -> Iterator[None]:
        """Around making a post: if it fails, forget the blobs stored for it alone (the
        `added` ones no stored post names); a broken rule becomes one line (a StoreError
        already is one, and goes on as it is)."""
        try:
            yield
        except RecordError as exc:  # a rule of posts broken (text too long, say)
            self._forget(added)
            raise _error(f"the post cannot be made: {exc}") from None
        except BaseException:
            self._forget(added)
            raise

    def _forget(self, added: list[bytes]) -> None:
        for blob in added:  # stored for this post alone, which is not made
            self.store.forget_unnamed_blob(blob)

    def _store_files(self, files: Sequence[str], added: list[bytes]) -> list[dict[str, Any]]:
        attachments = []
        for text in files:
            path = Path(text)
            if not path.is_absolute():
                raise _error(f"{text}: give the file's full path")
            if not path.is_file():
                raise _error(f"{text}: no such file")
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                before = self.store.blob_limits().count
                blob, size = self.store.add_blob_file(path, mime)
                if self.store.blob_limits().count > before:
                    added.append(blob)
            except BlobTooBig as exc:
                raise _error(f"{path.name} cannot be attached: {exc}") from None
            except BlobBusy:
                raise _error(
                    f"{path.name} is being received from a member right now: try again soon"
                ) from None
            except OSError as exc:
                raise _error(f"{text} cannot be read: {exc.strerror or exc}") from None
            except StoreError as exc:  # changed while it was read
                raise _error(f"{path.name} cannot be attached: {exc}") from None
            entry: dict[str, Any] = {"hash": blob, "size": size, "mime": mime}
            if _file_name(path):
                entry["name"] = _file_name(path)
            attachments.append(entry)
        return attachments

    async def wait_for_fetches(self, attachments: Sequence[dict[str, Any]], members: int) -> None:
        """A node started for one post stays until each member online has fetched the
        files (or SERVE_WAIT has passed): it is the only one holding them."""
        if not self.temporary or not members or not attachments:
            return
        served = self.node.blobs.served
        with trio.move_on_after(SERVE_WAIT):
            while any(served[a["hash"]] < members for a in attachments):
                await trio.sleep(0.1)

    async def blobs(
        self, max_size: str | int | None = None, max_total: str | int | None = None
    ) -> dict[str, Any]:
        """The limits on pictures and files (which a member may change), and usage."""
        try:
            size = parse_size(max_size) if isinstance(max_size, str) else max_size
            total = parse_size(max_total) if isinstance(max_total, str) else max_total
            self.store.set_blob_limits(max_size=size, max_total=total)
        except StoreError as exc:
            raise _error(str(exc)) from None
        if size is not None or total is not None:
            self.node.blobs.kick()  # what was too big may fit now
        limits = self.store.blob_limits()
        return {
            "max_size": limits.max_size,
            "max_total": limits.max_total,
            "hard_max_size": HARD_MAX_SIZE,
            "used": limits.used,
            "count": limits.count,
            "fetching": self.node.blobs.fetching(),
            "counts": dict(self.node.blobs.counts),
        }

    async def attachment_save(self, post: str, file: str, index: int = 1) -> dict[str, Any]:
        """Write a post's attachment to a file, fetching it first if it is not here."""
        attachment = self._attachment(post, index)
        post_id = attachment.post
        target = Path(file)
        if not target.is_absolute():
            raise _error(f"{file}: give the full path of the file to write")
        if target.exists():
            raise _error(f"{file} already exists: choose another file name")
        if not target.parent.is_dir():
            raise _error(f"{target.parent} is not a folder")
        fetched = await self._fetch_attachment(attachment)
        size = self._write_blob(attachment, target)
        return {
            "post": post_id.hex(),
            "index": index,
            "name": attachment.name,
            "mime": attachment.mime,
            "size": size,
            "file": str(target),
            "fetched": fetched,
        }

    def _attachment(self, post: str, index: int) -> Attachment:
        try:
            post_id = bytes.fromhex(post)
        except ValueError:
            post_id = b""
        found = self.store.post_attachments(post_id) if len(post_id) == 32 else None
        if found is None:
            raise _error(f"no post {post[:12]}… is known here")
        if not found:
            raise _error("that post has no attachments")
        if not 1 <= index <= len(found):
            raise _error(f"that post has {len(found)} attachment(s): give an index from 1")
        return found[index - 1]

    async def _fetch_attachment(self, attachment: Attachment) -> bool:
        """Fetch an attachment that is not here yet; whether it had to be fetched."""
        if attachment.state == "here":
            return False
        communities = self.store.blob_communities(attachment.hash)
        for community in communities:
            await self._reach(community)
        try:
            await self.node.blobs.fetch(
                attachment.hash, attachment.size, attachment.mime, communities
            )
        except BlobTooBig as exc:
            raise _error(f"{attachment.name or 'the file'} cannot be fetched: {exc}") from None
        except (BlobError, StoreError) as exc:
            raise _error(
                f"{attachment.name or 'the file'} is not here and could not be fetched: "
                f"{exc}. Try again when the member who posted it is online"
            ) from None
        return True

    async def attachment_data(
        self, post: str, index: int = 1, max_size: int = SHOW_MAX_SIZE
    ) -> dict[str, Any]:
        """The bytes of a post's attachment, to show it (the app's pictures): fetched
        first if it is not here; `data` is None when it is larger than `max_size`."""
        attachment = self._attachment(post, index)
        view = {**attachment_view(attachment), "post": post, "data": None}
        if attachment.size > max_size:
            return {**view, "state": "too big to show"}
        fetched = await self._fetch_attachment(attachment)
        digest = hashlib.blake2b(digest_size=32)
        data = bytearray()
        for chunk in self.store.blob_chunks(attachment.hash):
            digest.update(chunk)
            data += chunk
            if len(data) > max_size:
                return {**view, "state": "too big to show"}
        if digest.digest() != attachment.hash:
            self.store.forget_damaged_blob(attachment.hash)
            raise _error(
                f"the stored copy of {attachment.name or 'the picture'} was damaged and is "
                "forgotten: it will be fetched anew"
            )
        return {**view, "state": "here", "fetched": fetched, "data": bytes(data)}

    def _write_blob(self, attachment: Attachment, target: Path) -> int:
        """Write a held blob to `target`, which must not exist (never replaced, even if
        made meanwhile), through a partial file that only this call creates and removes;
        the bytes are checked against the hash as they are written. Returns the size."""
        partial = target.with_name(f".{target.name}.part")
        created = False
        digest = hashlib.blake2b(digest_size=32)
        size = 0
        try:
            with partial.open("xb") as out:
                created = True
                for chunk in self.store.blob_chunks(attachment.hash):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.digest() != attachment.hash or size != self.store.blob_size(attachment.hash):
                self.store.forget_damaged_blob(attachment.hash)
                raise _error(
                    f"the stored copy of {attachment.name or 'the file'} was damaged and is "
                    "forgotten: save it again to fetch it anew"
                )
            _place(partial, target)  # fails if the target appeared meanwhile
        except FileExistsError:
            if not created:
                raise _error(f"{partial} is in the way: move it and try again") from None
            raise _error(f"{target} already exists: choose another file name") from None
        except OSError as exc:
            raise _error(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            if created:
                partial.unlink(missing_ok=True)
        return size

    if TYPE_CHECKING:  # what Commands provides

        async def _reach(self, community: bytes) -> int: ...
