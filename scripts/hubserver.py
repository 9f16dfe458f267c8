#!/usr/bin/env python3
"""hubserver.py — a local Hugging Face Hub for tests and benchmarks (Python standard library).

It serves repos from a folder tree over the Hub's HTTP API (repo info, tree listing with
pagination, paths-info, refs, commits, resolve with byte ranges, LFS redirects to a separate
signed "CDN" listener), keeps a JSON-lines log of every request, enforces optional per-bucket
quotas with the Hub's RateLimit headers, and injects faults on demand so that a client's
retry, pacing and validation logic can be tested. It binds to loopback only.

Layout, flags and control commands: docs/HUBSERVER.md (and --help).
"""

import argparse
import base64
import email.utils
import fnmatch
import gzip
import hashlib
import hmac
import http.server
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n"
# A path segment that ends the repo id in a URL (huggingface_hub's _REPO_URL_SUBPATHS, plus the
# API-only ones).
SUBPATHS = {"resolve", "tree", "blob", "raw", "refs", "commit", "commits", "discussions",
            "settings", "revision", "paths-info"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
CREATED_AT = "2022-03-02T23:29:04.000Z"
TYPES = {"models": "model", "datasets": "dataset"}
HUB_HOST = "https://huggingface.co"


def iso_date(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def git_blob_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class RepoError(ValueError):
    """A repo folder the server cannot serve (bad .hub/meta.json, a tag without a target)."""


META_TYPES = {"private": bool, "gated": (bool, str), "authorized": list, "disabled": bool,
              "aliases": list, "tags": dict, "lfs": list, "library_name": str,
              "cardData": dict, "tags_list": list}


class HubError(Exception):
    """An error answer: status, X-Error-Code (or None), message, extra headers."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# ---------------------------------------------------------------------------------------------
# Content: blobs, commits, repos, and the store that finds them on disk.


class Blob:
    """One file's content: on disk (path) or in memory (data), with its hashes."""

    __slots__ = ("size", "sha1", "sha256", "path", "data", "mtime")

    def __init__(self, size, sha1, sha256, mtime, path=None, data=None):
        self.size, self.sha1, self.sha256, self.mtime = size, sha1, sha256, mtime
        self.path, self.data = path, data

    @classmethod
    def from_bytes(cls, data, mtime):
        return cls(len(data), git_blob_oid(data), hashlib.sha256(data).hexdigest(), mtime,
                   data=data)

    def read(self, start, length):
        if self.data is not None:
            return self.data[start:start + length]
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(length)


class Entry:
    """A file in a commit: its blob and whether the Hub stores it in LFS."""

    __slots__ = ("path", "blob", "lfs")

    def __init__(self, path, blob, lfs):
        self.path, self.blob, self.lfs = path, blob, lfs

    @property
    def pointer(self):
        return LFS_POINTER.format(self.blob.sha256, self.blob.size).encode()

    @property
    def oid(self):
        """The git oid: of the content, or of the pointer file for LFS (as the Hub reports)."""
        return git_blob_oid(self.pointer) if self.lfs else self.blob.sha1


class Commit:
    """An immutable snapshot: files by path, the directories they imply, date, parent."""

    def __init__(self, files, date, parent=None, title="Upload folder"):
        self.files, self.date, self.parent, self.title = files, date, parent, title
        self.dirs = set()
        for p in files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                self.dirs.add("/".join(parts[:i]))
        tree = "\n".join("%s\0%s" % (p, files[p].oid) for p in sorted(files)).encode()
        self.tree_oid = hashlib.sha1(b"tree\0" + tree).hexdigest()
        # Stable across restarts: a pure function of the content and the parent.
        self.sha = hashlib.sha1(("commit %s parent %s" % (self.tree_oid, parent or "")).encode()
                                ).hexdigest()

    def dir_oid(self, d):
        """Like git's tree oid, a function of the folder's content under names relative to it:
        folders with the same content share it, a folder and its only sub-folder do not."""
        prefix = d + "/"
        lines = "\n".join("%s\0%s" % (p[len(prefix):], self.files[p].oid)
                          for p in sorted(self.files) if p.startswith(prefix))
        return hashlib.sha1(b"tree\0" + lines.encode()).hexdigest()


class Repo:
    """A repo: type, id, access metadata, refs (branches, tags) and every commit it has had."""

    def __init__(self, rtype, rid, meta):
        self.rtype, self.rid, self.meta = rtype, rid, meta
        self.branches, self.tags, self.commits = {}, {}, {}
        self.lock = threading.Lock()

    @property
    def kind(self):
        return "model" if self.rtype == "model" else "dataset"

    def add_commit(self, commit):
        self.commits[commit.sha] = commit
        return commit

    def resolve(self, rev):
        """Revision (branch, tag, 40-hex commit, HEAD) → Commit, else RevisionNotFound."""
        with self.lock:
            if rev == "HEAD":
                rev = "main"
            sha = self.branches.get(rev) or self.tags.get(rev)
            if sha is None and COMMIT_RE.match(rev) and rev in self.commits:
                sha = rev
        if sha is None:
            raise HubError(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
        return self.commits[sha]

    def known_ref(self, rev):
        with self.lock:
            return rev == "HEAD" or rev in self.branches or rev in self.tags or rev in self.commits


def is_repo_dir(path):
    """A folder is a repo when it holds a regular file or a .hub folder; otherwise an org."""
    try:
        with os.scandir(path) as it:
            for e in it:
                if e.name == ".hub" and e.is_dir():
                    return True
                if e.is_file():
                    return True
    except OSError:
        return False
    return False


def subdirs(path):
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


class Store:
    """Finds repos under --root, loads them lazily (hashing once per file), holds pushes."""

    def __init__(self, root, lfs_threshold, blob_dir=None):
        self.root, self.lfs_threshold, self.blob_dir = root, lfs_threshold, blob_dir
        self.lock = threading.RLock()
        self.hash_memo = {}
        self.blobs = {}  # sha256 → Blob, what the CDN serves
        self.rescan()

    def rescan(self):
        """(Re)build the index of repo folders and aliases; forget loaded repos and pushes."""
        index, aliases = {}, {}
        for top in subdirs(self.root):
            full = os.path.join(self.root, top)
            if top == "datasets":
                for org in subdirs(full):
                    self._index_ns(index, "dataset", os.path.join(full, org), org)
            elif is_repo_dir(full):
                index[("model", top)] = full
            else:
                self._index_ns(index, "model", full, top)
        for (rtype, rid), folder in index.items():
            for alias in self._read_meta(folder).get("aliases", []):
                aliases[(rtype, alias)] = rid
        with self.lock:
            self.index, self.aliases, self.repos = index, aliases, {}

    @staticmethod
    def _index_ns(index, rtype, full, name):
        if is_repo_dir(full):
            index[(rtype, name)] = full
            return
        for sub in subdirs(full):
            index[(rtype, name + "/" + sub)] = os.path.join(full, sub)

    @staticmethod
    def _read_meta(folder):
        path = os.path.join(folder, ".hub", "meta.json")
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise RepoError("%s: bad metadata: %s" % (path, e))
        if not isinstance(meta, dict):
            raise RepoError("%s: metadata must be a JSON object" % path)
        for key, value in meta.items():
            want = META_TYPES.get(key)
            if want is None:
                raise RepoError("%s: unknown field %r (known: %s)"
                                % (path, key, ", ".join(sorted(META_TYPES))))
            if not isinstance(value, want):
                raise RepoError("%s: field %r has the wrong type" % (path, key))
        if meta.get("gated") not in (None, False, "auto", "manual"):
            raise RepoError("%s: gated must be false, \"auto\" or \"manual\"" % path)
        return meta

    def canonical(self, rtype, rid):
        """The id a renamed (aliased) repo has now, or None when rid is not an alias."""
        return self.aliases.get((rtype, rid))

    def get(self, rtype, rid):
        """The Repo, loading it on first use; None when there is no such repo."""
        with self.lock:
            repo = self.repos.get((rtype, rid))
            if repo is not None:
                return repo
            folder = self.index.get((rtype, rid))
            if folder is None:
                return None
            repo = self._load(rtype, rid, folder)
            self.repos[(rtype, rid)] = repo
            return repo

    def _load(self, rtype, rid, folder):
        meta = self._read_meta(folder)
        repo = Repo(rtype, rid, meta)
        main = repo.add_commit(self._snapshot(folder, meta, top=True))
        repo.branches["main"] = main.sha
        hub = os.path.join(folder, ".hub")
        for kind, refs in (("branches", repo.branches), ("tags", repo.tags)):
            for name in subdirs(os.path.join(hub, kind)) if os.path.isdir(hub) else []:
                c = repo.add_commit(self._snapshot(os.path.join(hub, kind, name), meta))
                refs[urllib.parse.unquote(name)] = c.sha
        for tag, target in meta.get("tags", {}).items():
            sha = repo.branches.get(target) or repo.tags.get(target)
            if sha is None:
                raise RepoError("%s: tag %r points at unknown ref %r" % (folder, tag, target))
            repo.tags[tag] = sha
        return repo

    def _snapshot(self, folder, meta, top=False):
        files, newest = {}, 0
        for dirpath, dirnames, filenames in os.walk(folder):
            rel_dir = os.path.relpath(dirpath, folder)
            if rel_dir == ".":
                rel_dir = ""
            dirnames[:] = sorted(d for d in dirnames
                                 if d != ".git" and not (top and rel_dir == "" and d == ".hub"))
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if not os.path.isfile(full):
                    continue
                rel = (rel_dir + "/" + name) if rel_dir else name
                blob = self.blob_for(full)
                files[rel] = Entry(rel, blob, self.is_lfs(rel, blob, meta))
                newest = max(newest, int(blob.mtime))
        return Commit(files, newest or time.time())

    def is_lfs(self, path, blob, meta):
        """Big files, and those matching the repo's "lfs" globs, live in LFS (served by the CDN)."""
        return blob.size >= self.lfs_threshold or any(fnmatch.fnmatch(path, g)
                                                       for g in meta.get("lfs", []))

    def blob_for(self, full):
        st = os.stat(full)
        key = (os.path.realpath(full), st.st_size, st.st_mtime_ns, st.st_ino)
        with self.lock:
            blob = self.hash_memo.get(key)
        if blob is None:
            h1 = hashlib.sha1(b"blob %d\0" % st.st_size)
            h256 = hashlib.sha256()
            with open(full, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    h1.update(chunk)
                    h256.update(chunk)
            blob = Blob(st.st_size, h1.hexdigest(), h256.hexdigest(), st.st_mtime, path=full)
            with self.lock:
                self.hash_memo[key] = blob
        self.register_blob(blob)
        return blob

    def register_blob(self, blob):
        with self.lock:
            self.blobs.setdefault(blob.sha256, blob)
        if self.blob_dir:
            self._place_blob(blob)

    def _place_blob(self, blob):
        """Lay the blob out as BLOB_DIR/<sha256> so a plain web server can serve it."""
        dest = os.path.join(self.blob_dir, blob.sha256)
        if os.path.exists(dest):
            return
        tmp = "%s.tmp%d.%d" % (dest, os.getpid(), threading.get_ident())
        if blob.path is not None:
            os.symlink(os.path.abspath(blob.path), tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(blob.data)
        os.replace(tmp, dest)

    def push(self, repo, branch, files, delete, message):
        """A new commit on branch: the branch tip with files added/replaced and paths deleted."""
        now = time.time()
        with repo.lock:
            parent_sha = repo.branches.get(branch) or repo.branches.get("main")
            parent = repo.commits[parent_sha] if parent_sha else None
            new = dict(parent.files) if parent else {}
            for p in delete:
                if p not in new:
                    raise HubError(400, None, "push: %s is not in branch %s" % (p, branch))
                del new[p]
            for p, data in files.items():
                blob = Blob.from_bytes(data, now)
                self.register_blob(blob)
                new[p] = Entry(p, blob, self.is_lfs(p, blob, repo.meta))
            c = Commit(new, now, parent=parent_sha, title=message)
            repo.commits[c.sha] = c
            repo.branches[branch] = c.sha
        return c


# ---------------------------------------------------------------------------------------------
# Rate limits: fixed windows per bucket, as the Hub counts them.


def parse_quota(text):
    """"api=12/30,resolvers=60/30" → {"api": (12, 30.0), ...}; ValueError names the bad part."""
    quotas = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"(api|resolvers|pages)=(\d+)/(\d+(?:\.\d+)?)", part)
        if not m:
            raise ValueError("bad quota %r (want BUCKET=N/SECONDS, bucket api|resolvers|pages)"
                             % part)
        quotas[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    return quotas


class Quota:
    """Per-bucket fixed windows; take() counts a request and says what is left. Anonymous
    requests have windows of their own for the buckets the anonymous quota names (the Hub
    gives anonymous users less), and share the others."""

    MODES = ("ratelimit", "retry-after", "retry-after-date", "none", "hostile")

    def __init__(self, quotas, mode="ratelimit", anon=None):
        self.lock = threading.Lock()
        self.set(quotas, mode, anon or {})

    def set(self, quotas, mode=None, anon=None):
        with self.lock:
            self.quotas = dict(quotas)
            if anon is not None:
                self.anon = dict(anon)
            self.start = time.monotonic()
            self.used = {}
            if mode is not None:
                if mode not in self.MODES:
                    raise ValueError("bad quota header mode %r (one of %s)"
                                     % (mode, ", ".join(self.MODES)))
                self.mode = mode

    def take(self, bucket, anonymous=False):
        """None when the bucket has no quota, else (allowed, remaining, reset_s, q, w)."""
        with self.lock:
            pool = "anon" if anonymous and bucket in self.anon else "all"
            quotas = self.anon if pool == "anon" else self.quotas
            if bucket not in quotas:
                return None
            q, w = quotas[bucket]
            now = time.monotonic()
            window = int((now - self.start) // w)
            used_window, used = self.used.get((pool, bucket), (window, 0))
            if used_window != window:
                used = 0
            allowed = used < q
            if allowed:
                used += 1
            self.used[(pool, bucket)] = (window, used)
            reset = max(1, int(-(-(self.start + (window + 1) * w - now) // 1)))
            return allowed, q - used, reset, q, w

    def headers(self, bucket, state, limited):
        """The RateLimit headers for one answer in the configured header form."""
        if state is None or self.mode == "none":
            return {}
        _, remaining, reset, q, w = state
        if self.mode == "hostile":
            reset = 999999999
        hdrs = {"RateLimit": '"%s";r=%d;t=%d' % (bucket, remaining, reset),
                "RateLimit-Policy": '"fixed window";"%s";q=%d;w=%d' % (bucket, q, int(w))}
        if limited and self.mode == "retry-after":
            hdrs = {"Retry-After": str(reset)}
        elif limited and self.mode == "retry-after-date":
            hdrs = {"Retry-After": http_date(time.time() + reset)}
        return hdrs


# ---------------------------------------------------------------------------------------------
# Fault injection: each fault is scoped (listener, bucket, method, URL path glob, repo, file
# glob), fires for the next `count` matching requests (-1: every one) after `skip` of them,
# with probability `prob`.

FAULT_PHASES = {
    # answered before routing
    "status": "request", "hang": "request", "cdn_refuse": "request", "drop": "request",
    "delay": "request",
    # change a JSON listing (tree, paths-info, repo info siblings)
    "inject_entries": "listing", "hostile_names": "listing", "body": "listing",
    # change the bytes of a file, or how a range of it is answered
    "lfs_pointer": "content", "html": "content", "corrupt": "content",
    "ignore_range": "content", "wrong_range": "content", "gzip": "content",
    # change how any body is sent
    "reset": "send", "slow": "send", "truncate": "send", "long_body": "send",
    "wrong_length": "send", "stall": "send",
}
FAULT_SCOPE = ("listener", "bucket", "method", "path", "repo", "file")
FAULT_COMMON = FAULT_SCOPE + ("kind", "count", "skip", "prob")
FAULT_PARAMS = {
    "status": {"status", "headers", "t", "message"}, "hang": {"seconds"}, "cdn_refuse": set(),
    "drop": set(), "delay": {"seconds"},
    "inject_entries": {"entries"}, "hostile_names": set(), "body": {"text", "repeat"},
    "lfs_pointer": set(), "html": set(), "corrupt": {"offset"},
    "ignore_range": set(), "wrong_range": {"shift", "total"}, "gzip": set(),
    "reset": {"after"}, "slow": {"rate"}, "truncate": {"after"}, "long_body": {"extra"},
    "wrong_length": {"delta"}, "stall": {"after", "seconds"},
}


class Fault:
    def __init__(self, fid, spec):
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object, got %r" % (spec,))
        kind = spec.get("kind")
        if kind not in FAULT_PHASES:
            raise ValueError("unknown fault kind %r (one of %s)"
                             % (kind, ", ".join(sorted(FAULT_PHASES))))
        unknown = set(spec) - set(FAULT_COMMON) - FAULT_PARAMS[kind]
        if unknown:
            raise ValueError("fault %s: unknown field(s) %s" % (kind, ", ".join(sorted(unknown))))
        self.id, self.kind, self.spec = fid, kind, dict(spec)
        self.phase = FAULT_PHASES[kind]
        self.count = int(spec.get("count", 1))
        self.skip = int(spec.get("skip", 0))
        self.prob = float(spec.get("prob", 1.0))
        self.fired = 0
        if kind == "status":
            st = spec.get("status", 503)
            self.statuses = [int(x) for x in (st if isinstance(st, list) else [st])]
            if not self.statuses or any(not 400 <= x <= 599 for x in self.statuses):
                raise ValueError("fault status: status %r: want error statuses (4xx/5xx)" % st)
            mode = spec.get("headers", "ratelimit")
            if mode not in Quota.MODES:
                raise ValueError("fault status: headers %r not one of %s"
                                 % (mode, ", ".join(Quota.MODES)))
        if kind == "slow" and float(spec.get("rate", 0)) <= 0:
            raise ValueError("fault slow: rate (bytes/s) must be > 0")

    def scope_matches(self, ctx):
        for key in FAULT_SCOPE:
            want = self.spec.get(key)
            if want is None:
                continue
            have = ctx.get(key)
            if have is None:
                return False
            if key in ("path", "repo", "file"):
                if not fnmatch.fnmatchcase(have, want):
                    return False
            elif have.lower() != str(want).lower():
                return False
        return True

    def describe(self):
        return dict(self.spec, id=self.id, remaining=self.count, fired=self.fired)


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.items, self.next_id = [], 1

    def add(self, spec):
        with self.lock:
            f = Fault(self.next_id, spec)
            self.next_id += 1
            self.items.append(f)
            return f.id

    def clear(self):
        with self.lock:
            self.items = []

    def list(self):
        with self.lock:
            return [f.describe() for f in self.items]

    def take(self, ctx, phase):
        """The first armed fault of this phase whose scope matches ctx, consumed; else None."""
        with self.lock:
            for f in self.items:
                if f.phase != phase or f.count == 0 or not f.scope_matches(ctx):
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    continue
                if f.prob < 1.0 and random.random() >= f.prob:
                    continue
                if f.count > 0:
                    f.count -= 1
                f.fired += 1
                return f
        return None


def hostile_entries():
    """Tree entries no client should accept: escapes, odd segments, bad sizes, duplicates."""
    f = lambda p, size=10: {"type": "file", "oid": "0" * 40, "size": size, "path": p}
    return [f(".."), f("../escape"), f("a/../../escape"), f("."), f("./dot"), f("a//b"),
            f("/absolute"), f("back\\slash"), f("nul\0byte"), f("ctrl\x01\x1f"),
            f("x" * 300), f("deep/" + "y" * 300 + "/z"), f(""), f("negative", -1),
            f("absurd", 1 << 62), f("notanumber", "12"), f("dup"), f("dup"),
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": "../dirup"},
            {"type": "file", "path": "nooid-nosize"}, "not-an-object", None]


# ---------------------------------------------------------------------------------------------
# Answers.


class Response:
    """Status, headers and a body: bytes, or `length` bytes of a Blob from `start`."""

    def __init__(self, status, headers=None, body=b"", blob=None, start=0, length=0):
        self.status, self.headers = status, dict(headers or {})
        self.body, self.blob, self.start = body, blob, start
        self.length = length if blob is not None else len(body)
        self.listing = None  # the JSON value of a listing, so listing faults can change it
        self.content = False  # True when the body is a file's bytes

    def set_json(self, value, extra=None):
        self.listing = value
        self.body = json.dumps(value).encode()
        self.length = len(self.body)
        self.headers["Content-Type"] = "application/json; charset=utf-8"
        if extra:
            self.headers.update(extra)
        return self

    def chunk(self, off, n):
        """n body bytes from offset off (within this answer's range)."""
        if self.blob is not None:
            return self.blob.read(self.start + off, n)
        return self.body[off:off + n]

    def materialize(self):
        if self.blob is not None:
            self.body = self.blob.read(self.start, self.length)
            self.blob = None


def json_response(value, status=200, headers=None):
    return Response(status, headers).set_json(value)


def error_response(err):
    hdrs = dict(err.headers)
    if err.code:
        hdrs["X-Error-Code"] = err.code
    hdrs["X-Error-Message"] = err.message
    return json_response({"error": err.message}, err.status, hdrs)


def parse_range(header, size):
    """(start, length) for a single satisfiable byte range, None to serve it all, or raise 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # multiple or malformed ranges: ignored, as RFC 9110 allows
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise HubError(416, None, "Range Not Satisfiable",
                           {"Content-Range": "bytes */%d" % size})
        start = max(0, size - n)
        return start, size - start
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise HubError(416, None, "Range Not Satisfiable", {"Content-Range": "bytes */%d" % size})
    end = min(end, size - 1)
    return start, end - start + 1


def bytes_response(handler, blob, headers, etag):
    """200/206/304 with the file's bytes, as the request's Range and If-None-Match ask;
    headers are the caller's (commit...)."""
    range_header = handler.headers.get("Range")
    if_none_match = handler.headers.get("If-None-Match")
    hdrs = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
            "Last-Modified": http_date(blob.mtime)}
    hdrs.update(headers)
    hdrs["ETag"] = '"%s"' % etag
    if if_none_match and etag in if_none_match.replace("W/", "").replace('"', " ").split():
        return Response(304, hdrs)
    rng = parse_range(range_header, blob.size)
    if rng is None:
        resp = Response(200, hdrs, blob=blob, start=0, length=blob.size)
    else:
        start, length = rng
        hdrs["Content-Range"] = "bytes %d-%d/%d" % (start, start + length - 1, blob.size)
        resp = Response(206, hdrs, blob=blob, start=start, length=length)
    resp.content = True
    return resp


def entry_json(commit, path):
    """A tree / paths-info entry for a file or directory of commit."""
    e = commit.files.get(path)
    if e is None:
        return {"type": "directory", "oid": commit.dir_oid(path), "size": 0, "path": path}
    d = {"type": "file", "oid": e.oid, "size": e.blob.size, "path": path}
    if e.lfs:
        d["lfs"] = {"oid": e.blob.sha256, "size": e.blob.size, "pointerSize": len(e.pointer)}
    return d


def tree_paths(commit, base, recursive):
    """Paths of the entries under directory base ("" = root), sorted; None if base is no dir."""
    if base and base not in commit.dirs:
        return None
    prefix = base + "/" if base else ""
    out = set()
    for p in list(commit.files) + list(commit.dirs):
        if not p.startswith(prefix) or p == base:
            continue
        rest = p[len(prefix):]
        if recursive or "/" not in rest:
            out.add(p)
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# The Hub: routes, auth, quotas, faults and the request log, shared by both listeners.


def bucket_of(listener, path):
    if listener == "cdn":
        return "cdn"
    if path.startswith("/_control"):
        return "control"
    if path.startswith("/api/resolve-cache/"):
        return "resolvers"
    if path.startswith("/api/"):
        return "api"
    return "resolvers" if "/resolve/" in path else "pages"


def split_repo(segs, max_len=2):
    """Raw path segments → (repo id, rest): the id ends at a SUBPATHS segment (≤ 2 segments)."""
    n = 0
    while n < len(segs) and n < max_len and segs[n] not in SUBPATHS:
        n += 1
    if n == 0:
        raise HubError(400, None, "no repo id in URL")
    return "/".join(urllib.parse.unquote(s) for s in segs[:n]), segs[n:]


def split_rev(repo, segs):
    """Raw segments after /resolve/, /tree/...: (revision, rest). A revision is one
    percent-encoded segment, or raw slashes when that names a known ref (refs/pr/1)."""
    if not segs or segs[0] == "":
        raise HubError(400, None, "no revision in URL")
    for k in range(len(segs), 1, -1):
        cand = "/".join(urllib.parse.unquote(s) for s in segs[:k])
        if repo.known_ref(cand):
            return cand, segs[k:]
    return urllib.parse.unquote(segs[0]), segs[1:]


class Hub:
    def __init__(self, args):
        self.args = args
        self.store = Store(args.root, args.lfs_threshold, args.blob_dir)
        self.tokens = set(args.token or [])
        self.quota = Quota(parse_quota(args.quota), args.quota_headers,
                           parse_quota(args.anon_quota))
        self.faults = Faults()
        for spec in args.fault or []:
            self.faults.add(json.loads(spec))
        if args.random_errors:
            self.faults.add({"kind": "status", "status": [429, 500, 502, 503], "t": 1,
                             "prob": args.random_errors, "count": -1})
        self.cdn_key = (args.cdn_key or os.urandom(16).hex()).encode()
        self.page_size, self.cdn_ttl = args.page_size, args.cdn_ttl
        self.resolve_cache = args.resolve_cache
        self.cdn_port = None
        self.stop = threading.Event()
        self.log_lock = threading.Condition()
        self.log_entries, self.inflight, self.seq = [], 0, 0
        self.log_file = open(args.log, "a", buffering=1) if args.log else None

    # -- request log

    def begin(self, entry):
        """A request arrived: its entry takes the next place in the log (arrival order)."""
        with self.log_lock:
            self.inflight += 1
            entry["seq"] = self.seq
            self.seq += 1
            self.log_entries.append(entry)

    def end(self, entry):
        """Its answer is done: the entry is complete and goes to the file."""
        with self.log_lock:
            self.inflight -= 1
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")
            self.log_lock.notify_all()

    def _wait_idle(self, wait):
        """With log_lock held: wait (≤ wait s) until no request is being answered."""
        deadline = time.monotonic() + wait
        while self.inflight > 0 and time.monotonic() < deadline:
            self.log_lock.wait(max(0.0, deadline - time.monotonic()))

    def drain(self, wait):
        """On the way out: let answers in progress finish so their lines are logged."""
        with self.log_lock:
            self._wait_idle(wait)
            if self.log_file:
                self.log_file.flush()

    def log_since(self, since, wait):
        """Entries from index since, once the answers in progress are complete."""
        with self.log_lock:
            self._wait_idle(wait)
            return [dict(e) for e in self.log_entries[since:]]

    # -- auth

    @staticmethod
    def bearer(handler):
        h = handler.headers.get("Authorization")
        if not h:
            return None
        return h[7:].strip() if h.lower().startswith("bearer ") else h.strip()

    def check_token(self, token):
        if token is not None and self.tokens and token not in self.tokens:
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def check_access(self, repo, token, content):
        """Private repos are invisible without access; gated ones hide only file content."""
        meta = repo.meta
        allowed = meta.get("authorized")
        ok = token is not None and (allowed is None or token in allowed)
        if meta.get("private") and not ok:
            raise self.not_found(token)
        if meta.get("disabled"):
            raise HubError(403, None, "Access to this resource is disabled.")
        if meta.get("gated") and content and not ok:
            what = "%s %s" % (repo.kind, repo.rid)
            if token is None:
                raise HubError(401, "GatedRepo", "Access to %s is restricted. You must have "
                               "access to it and be authenticated to access it. Please log in."
                               % what)
            raise HubError(403, "GatedRepo", "Access to %s is restricted and you are not in "
                           "the authorized list. Visit %s/%s to ask for access."
                           % (what, HUB_HOST, repo.rid))

    @staticmethod
    def not_found(token):
        msg = "Repository not found"
        return HubError(401 if token is None else 404, "RepoNotFound", msg)

    def find_repo(self, rtype, rid, token, content, handler):
        """The repo, or the error a client without access gets; a renamed id redirects."""
        repo = self.store.get(rtype, rid)
        if repo is None:
            new = self.store.canonical(rtype, rid)
            if new is not None:
                raise Redirect(self.renamed_location(handler, rid, new))
            raise self.not_found(token)
        self.check_access(repo, token, content)
        return repo

    @staticmethod
    def renamed_location(handler, old, new):
        """The same URL with the old repo id replaced: a relative redirect, as the Hub does."""
        path = handler.path
        q_old = "/".join(urllib.parse.quote(s) for s in old.split("/"))
        for marker in ("/api/models/", "/api/datasets/", "/datasets/", "/"):
            if path.startswith(marker + q_old + "/") or path == marker + q_old \
                    or path.startswith(marker + q_old + "?"):
                return marker + new + path[len(marker + q_old):]
        return path

    # -- routing

    def route(self, handler, method, ctx):
        path = ctx["rawpath"]
        if ctx["listener"] == "cdn":
            return self.cdn(handler, method, ctx)
        token = self.bearer(handler)
        self.check_token(token)
        segs = path.split("/")[1:]
        if segs[:1] == ["api"]:
            return self.api(handler, method, ctx, segs[1:], token)
        rtype = "model"
        if segs[:1] == ["datasets"]:
            rtype, segs = "dataset", segs[1:]
        elif segs[:1] == ["spaces"]:
            raise HubError(404, "RepoNotFound", "spaces are not served here")
        rid, rest = split_repo(segs)
        ctx["repo"] = rid
        if not rest or rest[0] not in ("resolve", "raw"):
            raise HubError(404, None, "not found: %s" % ctx["path"])
        repo = self.find_repo(rtype, rid, token, True, handler)
        rev, fsegs = split_rev(repo, rest[1:])
        commit = repo.resolve(rev)
        fpath = "/".join(urllib.parse.unquote(s) for s in fsegs)
        ctx["file"] = fpath
        return self.resolve(handler, method, ctx, repo, commit, fpath, raw=rest[0] == "raw",
                            anonymous=token is None)

    def api(self, handler, method, ctx, segs, token):
        if segs[:1] == ["whoami-v2"]:
            if token is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return json_response({"type": "user", "name": "user-" + token[:6],
                                  "auth": {"type": "access_token"}})
        if segs[:1] == ["resolve-cache"]:
            return self.resolve_cache_get(handler, method, ctx, segs[1:], token)
        if not segs or segs[0] not in ("models", "datasets"):
            raise HubError(404, None, "not found: %s" % ctx["path"])
        rtype = TYPES[segs[0]]
        rid, rest = split_repo(segs[1:])
        ctx["repo"] = rid
        repo = self.find_repo(rtype, rid, token, False, handler)
        action = rest[0] if rest else None
        if action is None:
            return self.info(handler, ctx, repo, repo.resolve("main"))
        if action == "revision":
            rev, _ = split_rev(repo, rest[1:])
            return self.info(handler, ctx, repo, repo.resolve(rev))
        if action == "tree":
            rev, psegs = split_rev(repo, rest[1:])
            commit = repo.resolve(rev)
            base = "/".join(urllib.parse.unquote(s) for s in psegs).strip("/")
            return self.tree(handler, ctx, repo, commit, base)
        if action == "paths-info" and method == "POST":
            rev, _ = split_rev(repo, rest[1:])
            return self.paths_info(handler, repo.resolve(rev))
        if action == "refs":
            return self.refs(repo, ctx)
        if action == "commits":
            rev, _ = split_rev(repo, rest[1:]) if len(rest) > 1 else ("main", [])
            return self.commits(repo, repo.resolve(rev))
        raise HubError(404, None, "not found: %s" % ctx["path"])

    # -- API answers

    def info(self, handler, ctx, repo, commit):
        blobs = ctx["query"].get("blobs", [""])[0].lower() == "true"
        siblings = []
        for p in sorted(commit.files):
            e = commit.files[p]
            s = {"rfilename": p}
            if blobs:
                s.update(blobId=e.oid, size=e.blob.size)
                if e.lfs:
                    s["lfs"] = {"sha256": e.blob.sha256, "size": e.blob.size,
                                "pointerSize": len(e.pointer)}
            siblings.append(s)
        meta = repo.meta
        author = repo.rid.split("/")[0] if "/" in repo.rid else None
        d = {"_id": hashlib.sha1(repo.rid.encode()).hexdigest()[:24], "id": repo.rid,
             "author": author, "sha": commit.sha, "lastModified": iso_date(commit.date),
             "createdAt": CREATED_AT, "private": bool(meta.get("private", False)),
             "gated": meta.get("gated", False), "disabled": bool(meta.get("disabled", False)),
             "downloads": 0, "likes": 0, "tags": meta.get("tags_list", []),
             "cardData": meta.get("cardData", {}), "siblings": siblings,
             "usedStorage": sum(e.blob.size for e in commit.files.values())}
        if repo.rtype == "model":
            d["modelId"] = repo.rid
            d["library_name"] = meta.get("library_name", "transformers")
        expand = ctx["query"].get("expand", []) + ctx["query"].get("expand[]", [])
        if expand:
            d = {k: v for k, v in d.items() if k in expand or k in ("_id", "id")}
        return json_response(d, headers={"X-Repo-Commit": commit.sha})

    def tree(self, handler, ctx, repo, commit, base):
        q = ctx["query"]
        recursive = q.get("recursive", ["false"])[0].lower() in ("true", "1")
        expand = q.get("expand", ["false"])[0].lower() in ("true", "1")
        paths = tree_paths(commit, base, recursive)
        if paths is None:
            raise HubError(404, "EntryNotFound", "%s does not exist on %s" % (base, commit.sha),
                           {"X-Repo-Commit": commit.sha})
        size = min(self.page_size, 50) if expand else self.page_size
        offset = 0
        if "cursor" in q:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(q["cursor"][0]))["o"])
            except (ValueError, KeyError, TypeError):
                raise HubError(400, None, "invalid cursor")
        page = []
        for p in paths[offset:offset + size]:
            d = entry_json(commit, p)
            if expand:
                d["lastCommit"] = {"id": commit.sha, "title": commit.title,
                                   "date": iso_date(commit.date)}
            page.append(d)
        hdrs = {"X-Repo-Commit": commit.sha}
        if offset + size < len(paths):
            cursor = base64.urlsafe_b64encode(json.dumps({"o": offset + size}).encode()).decode()
            nq = {k: v for k, v in q.items() if k != "cursor"}
            nq["cursor"] = [cursor]
            host = handler.headers.get("Host") or "127.0.0.1:%d" % handler.server.server_port
            url = "http://%s%s?%s" % (host, ctx["rawpath"], urllib.parse.urlencode(nq, doseq=True))
            hdrs["Link"] = '<%s>; rel="next"' % url
        return json_response(page, headers=hdrs)

    def paths_info(self, handler, commit):
        body = handler.read_body()
        ctype = handler.headers.get("Content-Type", "")
        try:
            if "json" in ctype:
                paths = json.loads(body or b"{}").get("paths", [])
            else:
                paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
        except (ValueError, AttributeError):
            raise HubError(400, None, "paths-info: body is neither JSON nor a form")
        if isinstance(paths, str):
            paths = [paths]
        wanted = [p.strip("/") for p in paths if isinstance(p, str)]
        out = [entry_json(commit, p) for p in wanted if p in commit.files or p in commit.dirs]
        return json_response(out, headers={"X-Repo-Commit": commit.sha})

    def refs(self, repo, ctx):
        prs = ctx["query"].get("include_prs", ["0"])[0] in ("1", "true", "True")
        with repo.lock:
            br = [{"name": n, "ref": "refs/heads/" + n, "targetCommit": s}
                  for n, s in sorted(repo.branches.items()) if not n.startswith("refs/")]
            tags = [{"name": n, "ref": "refs/tags/" + n, "targetCommit": s}
                    for n, s in sorted(repo.tags.items())]
            conv = [{"name": n[len("refs/convert/"):], "ref": n, "targetCommit": s}
                    for n, s in sorted(repo.branches.items()) if n.startswith("refs/convert/")]
            pr = [{"name": n[len("refs/pr/"):], "ref": n, "targetCommit": s}
                  for n, s in sorted(repo.branches.items()) if n.startswith("refs/pr/")]
        d = {"branches": br, "converts": conv, "tags": tags}
        if prs:
            d["pullRequests"] = pr
        return json_response(d)

    @staticmethod
    def commits(repo, commit):
        out = []
        while commit is not None:
            out.append({"id": commit.sha, "title": commit.title, "message": "",
                        "authors": [{"user": "hubserver"}], "date": iso_date(commit.date)})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return json_response(out)

    # -- files

    def resolve(self, handler, method, ctx, repo, commit, fpath, raw, anonymous):
        hdrs = {"X-Repo-Commit": commit.sha}
        if anonymous:
            hdrs["X-HF-Warning"] = "unauthenticated; Warning: You are sending unauthenticated " \
                                   "requests to the HF Hub. Please set a HF_TOKEN."
        e = commit.files.get(fpath)
        if e is None:
            raise HubError(404, "EntryNotFound", "Entry not found", hdrs)
        if raw and e.lfs:
            blob = Blob.from_bytes(e.pointer, e.blob.mtime)
            return bytes_response(handler, blob, hdrs, e.oid)
        if e.lfs:
            hdrs.update({"X-Linked-Etag": '"%s"' % e.blob.sha256,
                         "X-Linked-Size": str(e.blob.size), "ETag": '"%s"' % e.oid,
                         "Accept-Ranges": "bytes", "Content-Type": "text/plain; charset=utf-8"})
            loc = self.cdn_url(handler, e)
            hdrs["Location"] = loc
            return Response(302, hdrs, ("Found. Redirecting to %s" % loc).encode())
        if self.resolve_cache and not raw:
            loc = "/api/resolve-cache/%ss/%s/%s/%s?etag=%s" % (
                repo.rtype, repo.rid, commit.sha, urllib.parse.quote(fpath),
                urllib.parse.quote('"%s"' % e.oid))
            hdrs.update({"Location": loc, "Accept-Ranges": "bytes",
                         "Content-Type": "text/plain; charset=utf-8"})
            return Response(307, hdrs, ("Temporary Redirect. Redirecting to %s" % loc).encode())
        return bytes_response(handler, e.blob, hdrs, e.oid)

    def resolve_cache_get(self, handler, method, ctx, segs, token):
        if not segs or segs[0] not in ("models", "datasets"):
            raise HubError(400, None, "resolve-cache: bad repo type")
        rtype = TYPES[segs[0]]
        rest = segs[1:]
        k = next((i for i, s in enumerate(rest[:3]) if COMMIT_RE.match(s)), None)
        if k is None or k == 0:
            raise HubError(400, None, "resolve-cache wants a 40-hex commit")
        rid = "/".join(urllib.parse.unquote(s) for s in rest[:k])
        ctx["repo"] = rid
        repo = self.find_repo(rtype, rid, token, True, handler)
        commit = repo.resolve(rest[k])
        fpath = "/".join(urllib.parse.unquote(s) for s in rest[k + 1:])
        ctx["file"] = fpath
        e = commit.files.get(fpath)
        if e is None or e.lfs:  # the Hub sends LFS files to the CDN, never through here
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        return bytes_response(handler, e.blob, {"X-Repo-Commit": commit.sha}, e.oid)

    # -- the CDN

    def sign(self, sha256, expires):
        return hmac.new(self.cdn_key, ("%s:%d" % (sha256, expires)).encode(),
                        hashlib.sha256).hexdigest()

    def cdn_url(self, handler, entry):
        expires = int(-(-(time.time() + self.cdn_ttl) // 1))  # rounded up: at least the TTL
        query = urllib.parse.urlencode({"filename": entry.path, "Expires": expires,
                                        "Signature": self.sign(entry.blob.sha256, expires)})
        if self.args.cdn_url_base:
            return "%s/%s?%s" % (self.args.cdn_url_base.rstrip("/"), entry.blob.sha256, query)
        return "http://127.0.0.1:%d/blobs/%s?%s" % (self.cdn_port, entry.blob.sha256, query)

    def cdn(self, handler, method, ctx):
        m = re.fullmatch(r"/blobs/([0-9a-f]{64})", ctx["rawpath"])
        if not m or method not in ("GET", "HEAD"):
            return cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        q = ctx["query"]
        try:
            expires = int(q["Expires"][0])
            sig = q["Signature"][0]
        except (KeyError, ValueError):
            return cdn_error(403, "AccessDenied", "Missing or malformed signature")
        if not hmac.compare_digest(sig, self.sign(m.group(1), expires)):
            return cdn_error(403, "AccessDenied", "Signature does not match")
        if time.time() > expires:
            return cdn_error(403, "AccessDenied", "Request has expired")
        if self.args.cdn_reject_auth and handler.headers.get("Authorization"):
            return cdn_error(400, "InvalidArgument", "Only one auth mechanism allowed")
        blob = self.store.blobs.get(m.group(1))
        if blob is None:
            return cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        cdn_etag = hashlib.md5(blob.sha256.encode()).hexdigest()
        return bytes_response(handler, blob, {}, cdn_etag)


class Redirect(Exception):
    def __init__(self, location):
        super().__init__(location)
        self.location = location


def cdn_error(status, code, message):
    body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s"
            "</Message></Error>" % (code, message)).encode()
    return Response(status, {"Content-Type": "application/xml"}, body)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing: one handler class for both listeners.

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Hugging Face</title></head><body>"
             b"<h1>Something went wrong</h1><p>This is an HTML page, not the file.</p>"
             b"</body></html>\n")
MAX_BODY = 16 << 20


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1"

    def log_message(self, fmt, *args):
        if self.server.hub.args.verbose:
            sys.stderr.write("hubserver: %s\n" % (fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def read_body(self):
        if self._body is not None:
            return self._body
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise HubError(413, None, "request body too large")
        self._body = self.rfile.read(n) if n else b""
        return self._body

    def dispatch(self, method):
        hub = self.server.hub
        self._body = None  # one handler serves every request of a kept-alive connection
        listener = self.server.listener
        split = urllib.parse.urlsplit(self.path)
        if listener == "hub" and split.path.startswith("/_control"):
            return self.control(method, split)
        ctx = {"listener": listener, "method": method, "rawpath": split.path,
               "path": urllib.parse.unquote(split.path), "query": urllib.parse.parse_qs(
                   split.query, keep_blank_values=True),
               "bucket": bucket_of(listener, split.path)}
        if listener == "cdn":
            ctx["file"] = ctx["query"].get("filename", [None])[0]
        else:
            ctx["repo"], ctx["file"] = guess_scope(split.path)
        entry = {"time": round(time.time(), 6), "listener": listener, "method": method,
                 "path": split.path, "query": split.query, "bucket": ctx["bucket"],
                 "range": self.headers.get("Range"),
                 "auth": self.headers.get("Authorization") is not None,
                 "repo": ctx.get("repo")}
        hub.begin(entry)
        self.logged = False
        try:
            self.answer(hub, method, ctx, entry)
        finally:
            if not self.logged:
                hub.end(entry)

    def log_now(self, entry):
        """Log before the answer is done (a hang), so the log does not wait for it."""
        self.server.hub.end(entry)
        self.logged = True

    def answer(self, hub, method, ctx, entry):
        state = hub.quota.take(ctx["bucket"], self.headers.get("Authorization") is None) \
            if listener_counts(ctx) else None
        try:
            if state is not None:
                entry["ratelimit"] = {"r": state[1], "t": state[2]}
            if state is not None and not state[0]:
                resp = error_response(HubError(429, None, "You have exceeded the rate limit "
                                               "for the %s bucket" % ctx["bucket"]))
                resp.headers.update(hub.quota.headers(ctx["bucket"], state, True))
                return self.send(hub, ctx, resp, entry)
            fault = hub.faults.take(ctx_for_match(ctx), "request")
            if fault is not None:
                note_fault(entry, fault.kind)
                if fault.kind in ("hang", "drop"):
                    entry["status"], entry["bytes"] = 0, 0
                    self.log_now(entry)
                    if fault.kind == "hang":
                        hub.stop.wait(float(fault.spec.get("seconds", 3600)))
                    else:
                        self.server.reset_on_close(self.connection)
                    self.close_connection = True
                    return
                if fault.kind == "delay":  # a late first byte, then the normal answer
                    hub.stop.wait(float(fault.spec.get("seconds", 1)))
                    resp = self.routed(hub, method, ctx)
                else:
                    resp = self.fault_answer(hub, fault, ctx)
            else:
                resp = self.routed(hub, method, ctx)
            entry["repo"] = ctx.get("repo")
            if state is not None and resp.status != 429:  # a 429 fault keeps its own form
                resp.headers.update(hub.quota.headers(ctx["bucket"], state, False))
            self.send(hub, ctx, resp, entry)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def routed(self, hub, method, ctx):
        try:
            if method == "POST":
                self.read_body()  # so that an early error leaves no body on a kept-alive link
                if "/paths-info/" not in ctx["rawpath"]:
                    raise HubError(405, None, "POST is only for paths-info")
            return hub.route(self, method, ctx)
        except HubError as e:
            return error_response(e)
        except Redirect as r:
            return Response(307, {"Location": r.location}, b"")
        except RepoError as e:
            sys.stderr.write("hubserver: %s\n" % e)
            return error_response(HubError(500, None, "hubserver: %s" % e))
        except Exception as e:  # a bug here must still answer, and say what happened
            traceback.print_exc()
            return error_response(HubError(500, None, "hubserver internal error: %r" % e))

    def fault_answer(self, hub, fault, ctx):
        if fault.kind == "cdn_refuse":
            return cdn_error(403, "AccessDenied", "Request has expired")
        st = random.choice(fault.statuses)
        msg = fault.spec.get("message", "injected fault: %d" % st)
        resp = error_response(HubError(st, None, msg))
        if st == 429:
            t = int(fault.spec.get("t", 7))
            q, w = hub.quota.quotas.get(ctx["bucket"], (1000, 300))
            form = Quota({}, fault.spec.get("headers", "ratelimit"))
            resp.headers.update(form.headers(ctx["bucket"], (False, 0, t, q, w), True))
        return resp

    def send(self, hub, ctx, resp, entry):
        """Apply listing/content/send faults, then write the answer."""
        match = ctx_for_match(ctx)
        if resp.listing is not None:
            f = hub.faults.take(match, "listing")
            if f is not None:
                note_fault(entry, f.kind)
                apply_listing_fault(resp, f)
        if resp.content and resp.status in (200, 206):
            f = hub.faults.take(match, "content")
            if f is not None:
                note_fault(entry, f.kind)
                apply_content_fault(resp, f, ctx)
        send_fault = None
        if resp.length > 0 and resp.status in (200, 206):
            send_fault = hub.faults.take(match, "send")
        announced = resp.length
        if send_fault is not None:
            note_fault(entry, send_fault.kind)
            if send_fault.kind == "wrong_length":
                announced = max(0, resp.length + int(send_fault.spec.get("delta", 100)))
        entry["status"] = resp.status
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(announced))
        self.send_header("X-Request-Id", "Root=1-%08x-%s" % (int(time.time()),
                                                             os.urandom(12).hex()))
        if send_fault is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        entry["bytes"] = 0
        if ctx["method"] == "HEAD" or resp.status == 304:
            return
        self.write_body(resp, send_fault, entry, hub)

    def write_body(self, resp, fault, entry, hub):
        kind = fault.kind if fault else None
        limit = resp.length
        if kind in ("truncate", "reset", "stall"):
            limit = min(resp.length, int(fault.spec.get("after", resp.length // 2)))
        rate = float(fault.spec["rate"]) if kind == "slow" else None
        if kind is None and resp.blob is not None and resp.blob.path is not None:
            with open(resp.blob.path, "rb") as f:  # the fast path: the kernel copies
                entry["bytes"] = self.connection.sendfile(f, resp.start, limit) if limit else 0
            return
        if not self.write_range(resp, 0, limit, rate, entry, hub):
            return
        if kind == "stall":
            # then silence on the open connection, then the rest
            if not hub.stop.wait(float(fault.spec.get("seconds", 3600))):
                self.write_range(resp, limit, resp.length, None, entry, hub)
        elif kind == "long_body":
            extra = b"X" * int(fault.spec.get("extra", 64))
            self.wfile.write(extra)
            entry["bytes"] += len(extra)
        elif kind == "reset":
            self.server.reset_on_close(self.connection)
        if kind in ("truncate", "reset", "long_body", "wrong_length"):
            self.close_connection = True

    def write_range(self, resp, start, end, rate, entry, hub):
        """Body bytes [start, end) in chunks, at most `rate` bytes/s; False if stopped."""
        step = max(1, min(65536, int(rate / 10))) if rate else 1 << 20
        for off in range(start, end, step):
            chunk = resp.chunk(off, min(step, end - off))
            self.wfile.write(chunk)
            entry["bytes"] += len(chunk)
            if rate and hub.stop.wait(len(chunk) / rate):
                return False
        return True

    # -- the control endpoint

    def control(self, method, split):
        hub = self.server.hub
        try:
            if method == "GET" and split.path == "/_control/log":
                q = urllib.parse.parse_qs(split.query)
                since = int(q.get("since", ["0"])[0])
                wait = float(q.get("wait", ["2"])[0])
                lines = "".join(json.dumps(e) + "\n" for e in hub.log_since(since, wait))
                return self.control_reply(200, lines.encode(), "application/x-ndjson")
            if method == "GET" and split.path == "/_control/info":
                return self.control_json(200, hub_info(hub))
            if method == "GET" and split.path == "/_control/faults":
                return self.control_json(200, hub.faults.list())
            if method == "POST" and split.path == "/_control":
                cmd = json.loads(self.read_body() or b"{}")
                if not isinstance(cmd, dict) or "cmd" not in cmd:
                    raise ValueError('the body must be a JSON object with a "cmd" field')
                return self.control_json(200, run_control(hub, cmd))
            return self.control_json(404, {"error": "unknown control URL %s" % split.path})
        except (ValueError, KeyError, TypeError, HubError) as e:
            return self.control_json(400, {"error": "%s: %s" % (type(e).__name__, e)})

    def control_json(self, status, value):
        self.control_reply(status, (json.dumps(value) + "\n").encode(), "application/json")

    def control_reply(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def guess_scope(path):
    """(repo id, file path) from a Hub URL before routing, so request-phase faults can be
    scoped by repo and file; routing replaces them with the exact values."""
    segs = path.split("/")[1:]
    if segs[:1] == ["api"]:
        segs = segs[2:] if len(segs) > 1 and segs[1] in ("models", "datasets") else []
    elif segs[:1] == ["datasets"]:
        segs = segs[1:]
    try:
        rid, rest = split_repo(segs)
    except HubError:
        return None, None
    if len(rest) >= 3 and rest[0] in ("resolve", "raw"):
        return rid, "/".join(urllib.parse.unquote(x) for x in rest[2:])
    return rid, None


def note_fault(entry, kind):
    """The log's "fault": the kind that fired, or "a+b" when faults of two phases did."""
    entry["fault"] = entry["fault"] + "+" + kind if entry.get("fault") else kind


def listener_counts(ctx):
    return ctx["listener"] == "hub"


def ctx_for_match(ctx):
    return {k: ctx.get(k) for k in FAULT_SCOPE}


def apply_listing_fault(resp, f):
    if f.kind == "body":
        resp.body = (f.spec.get("text", "{not json") * int(f.spec.get("repeat", 1))).encode()
        resp.length = len(resp.body)
        return
    extra = f.spec.get("entries", []) if f.kind == "inject_entries" else hostile_entries()
    value = resp.listing
    if isinstance(value, list):
        value = value + list(extra)
    elif isinstance(value, dict) and "siblings" in value:
        value = dict(value, siblings=value["siblings"] + [
            {"rfilename": e["path"], "size": e.get("size")} if isinstance(e, dict) and "path" in e
            else e for e in extra])
    resp.body = json.dumps(value).encode()
    resp.length = len(resp.body)


def apply_content_fault(resp, f, ctx):
    if f.kind in ("ignore_range", "gzip") and resp.blob is not None:
        # a 200 with the whole file, as a CDN that ignores Range (or compresses) sends
        resp.status, resp.start, resp.length = 200, 0, resp.blob.size
        resp.headers.pop("Content-Range", None)
        if f.kind == "gzip":
            resp.materialize()
            resp.body = gzip.compress(resp.body)
            resp.length = len(resp.body)
            resp.headers["Content-Encoding"] = "gzip"
        return
    if f.kind == "wrong_range":
        if resp.status == 206 and resp.blob is not None:
            shift = int(f.spec.get("shift", 1))
            total = int(f.spec.get("total", resp.blob.size))
            resp.headers["Content-Range"] = "bytes %d-%d/%d" % (
                resp.start + shift, resp.start + resp.length - 1 + shift, total)
        return
    if f.kind == "corrupt":
        resp.materialize()
        off = int(f.spec.get("offset", 0))
        if 0 <= off < len(resp.body):
            b = bytearray(resp.body)
            b[off] ^= 0xFF
            resp.body = bytes(b)
        return
    if f.kind == "lfs_pointer":
        body = LFS_POINTER.format("0" * 64, resp.length).encode()
        ctype = "text/plain; charset=utf-8"
    else:
        body, ctype = HTML_PAGE, "text/html; charset=utf-8"
    resp.blob, resp.body, resp.length, resp.status = None, body, len(body), 200
    resp.headers.pop("Content-Range", None)
    resp.headers["Content-Type"] = ctype


def hub_info(hub):
    return {"port": hub.port, "cdn_port": hub.cdn_port, "root": os.path.abspath(hub.args.root),
            "lfs_threshold": hub.store.lfs_threshold, "cdn_ttl": hub.cdn_ttl,
            "page_size": hub.page_size, "quota": {k: "%d/%g" % v for k, v in
                                                  hub.quota.quotas.items()},
            "anon_quota": {k: "%d/%g" % v for k, v in hub.quota.anon.items()},
            "quota_headers": hub.quota.mode, "resolve_cache": hub.resolve_cache,
            "requests": len(hub.log_entries)}


def decode_files(files):
    """push's "files": {path: text | {"base64": ...} | {"size": N, "seed": S}} → {path: bytes}."""
    out = {}
    for p, v in (files or {}).items():
        if isinstance(v, str):
            out[p] = v.encode()
        elif isinstance(v, dict) and "base64" in v:
            out[p] = base64.b64decode(v["base64"])
        elif isinstance(v, dict) and "size" in v:
            rnd = random.Random(v.get("seed", 0))
            out[p] = rnd.randbytes(int(v["size"]))
        else:
            raise ValueError("push: file %r: want a string, {base64} or {size, seed}" % p)
    return out


def control_repo(hub, cmd):
    """The repo a push or tag command names ("repo", "type": model|dataset)."""
    rtype = "dataset" if cmd.get("type") == "dataset" else "model"
    repo = hub.store.get(rtype, cmd["repo"])
    if repo is None:
        raise ValueError("%s: no %s repo %r" % (cmd["cmd"], rtype, cmd["repo"]))
    return repo


def run_control(hub, cmd):
    """One control command (docs/HUBSERVER.md lists them); returns its JSON answer."""
    c = cmd["cmd"]
    if c == "fault":
        spec = {k: v for k, v in cmd.items() if k != "cmd"}
        return {"id": hub.faults.add(spec)}
    if c == "clear_faults":
        hub.faults.clear()
        return {"ok": True}
    if c == "quota":
        quotas = parse_quota(cmd.get("quota") or "")
        anon = parse_quota(cmd["anon"] or "") if "anon" in cmd else None
        hub.quota.set(quotas, cmd.get("headers"), anon)
        return {"ok": True}
    if c == "clear_log":
        with hub.log_lock:
            hub.log_entries = []
        return {"ok": True}
    if c == "config":
        if "page_size" in cmd:
            hub.page_size = max(1, int(cmd["page_size"]))
        if "cdn_ttl" in cmd:
            hub.cdn_ttl = float(cmd["cdn_ttl"])
        if "resolve_cache" in cmd:
            hub.resolve_cache = bool(cmd["resolve_cache"])
        return hub_info(hub)
    if c == "rescan":
        hub.store.rescan()
        return {"ok": True}
    if c == "push":
        repo = control_repo(hub, cmd)
        branch = cmd.get("branch", "main")
        commit = hub.store.push(repo, branch, decode_files(cmd.get("files")),
                                cmd.get("delete", []), cmd.get("message", "Update"))
        return {"sha": commit.sha, "branch": branch}
    if c == "tag":
        repo = control_repo(hub, cmd)
        target = repo.resolve(cmd.get("target", "main"))
        kind = repo.branches if cmd.get("branch") else repo.tags
        with repo.lock:
            kind[cmd["name"]] = target.sha
        return {"sha": target.sha}
    raise ValueError("unknown control command %r" % c)


# ---------------------------------------------------------------------------------------------
# Entry point.


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, hub, listener):
        self.hub, self.listener = hub, listener
        self.resets, self.resets_lock = [], threading.Lock()
        super().__init__(addr, Handler)

    def reset_on_close(self, sock):
        """Close this connection with a TCP RST instead of a FIN (the reset fault)."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.resets_lock:
            self.resets.append(sock)

    def shutdown_request(self, request):
        with self.resets_lock:
            reset = any(r is request for r in self.resets)
            self.resets = [r for r in self.resets if r is not request]
        if reset:
            self.close_request(request)  # no shutdown(SHUT_WR): that would send a FIN first
        else:
            super().shutdown_request(request)


def write_port_file(path, port):
    """Atomically, so a reader never sees a partial number."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


HELP_EPILOG = """\
repo layout (under --root):
  ORG/REPO/...            a model repo; its files are the tip of branch main
  NAME/...                a one-segment (legacy) model id: a top-level folder holding a regular
                          file or a .hub folder is a repo, any other folder is an org
  datasets/ORG/NAME/...   a dataset repo (datasets/NAME/ for a one-segment id)
  REPO/.hub/meta.json     optional: {"private": bool, "gated": false|"auto"|"manual",
                          "authorized": [tokens], "disabled": bool, "aliases": ["old-id"],
                          "tags": {"v1.0": "main"}, "lfs": ["*.bin"]}
  REPO/.hub/branches/NAME/  another branch (NAME percent-encoded: refs%%2Fpr%%2F1)
  REPO/.hub/tags/NAME/      a tag with its own files

faults (--fault JSON or POST /_control {"cmd":"fault",...}): kind one of
  status (status, headers, t, message), hang (seconds), drop, delay (seconds), cdn_refuse,
  inject_entries (entries),
  hostile_names, body (text, repeat), lfs_pointer, html, corrupt (offset), ignore_range,
  wrong_range (shift, total), gzip, reset (after), slow (rate), truncate (after),
  long_body (extra), wrong_length (delta), stall (after, seconds);
  scoped by listener (hub|cdn), bucket (api|resolvers|pages|cdn), method, path (glob on the
  URL path), repo (glob), file (glob on the repo file path); fired for the next count matching
  requests (-1: all) after skip of them, each with probability prob.
control: GET /_control/log[?since=N], /_control/info, /_control/faults;
  POST /_control {"cmd": fault|clear_faults|quota|clear_log|config|rescan|push|tag, ...}
See docs/HUBSERVER.md for the details.
"""


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="hubserver.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A local Hugging Face Hub serving repos from a folder tree, with request "
                    "log, quotas and fault injection. Binds to loopback only.",
        epilog=HELP_EPILOG)
    ap.add_argument("--root", required=True, help="folder holding the repos (layout below)")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default "
                    "127.0.0.1; anything but a loopback address is refused)")
    ap.add_argument("--port", type=int, default=0, help="Hub port (0: pick a free one)")
    ap.add_argument("--port-file", help="write the Hub port here once it listens")
    ap.add_argument("--cdn-port", type=int, default=0, help="CDN listener port (0: pick one)")
    ap.add_argument("--cdn-port-file", help="write the CDN port here once it listens")
    ap.add_argument("--log", help="append the request log here (JSON lines)")
    ap.add_argument("--lfs-threshold", type=int, default=10 << 20,
                    help="files of at least this many bytes are LFS files, served by a 302 to "
                         "the CDN (default 10 MiB; 0: every file)")
    ap.add_argument("--cdn-ttl", type=float, default=3600,
                    help="seconds a signed CDN URL stays valid (default 3600)")
    ap.add_argument("--cdn-key", help="HMAC key for CDN URLs (default: random per run)")
    ap.add_argument("--cdn-reject-auth", action="store_true",
                    help="the CDN answers 400 to a request carrying Authorization (as S3 does)")
    ap.add_argument("--cdn-url-base", help="redirect LFS files to URL/<sha256> (e.g. nginx "
                    "serving --blob-dir) instead of the built-in CDN listener")
    ap.add_argument("--blob-dir", help="lay out every served file as DIR/<sha256> (symlinks)")
    ap.add_argument("--resolve-cache", action="store_true",
                    help="answer /resolve/ of small files with a relative 307 to "
                         "/api/resolve-cache/... as the Hub does since 2025")
    ap.add_argument("--page-size", type=int, default=1000,
                    help="tree entries per page (default 1000; 50 with expand=true)")
    ap.add_argument("--token", action="append",
                    help="a valid bearer token (repeatable); other tokens get 401. Without "
                         "any, every token is valid")
    ap.add_argument("--quota", help="per-bucket quota, e.g. api=12/30,resolvers=60/30 "
                    "(N requests per fixed window of SECONDS); also adds the RateLimit headers")
    ap.add_argument("--anon-quota", help="a lower quota for anonymous requests (no "
                    "Authorization), counted in windows of their own, e.g. api=5/30")
    ap.add_argument("--quota-headers", default="ratelimit", choices=Quota.MODES,
                    help="how a 429 says when to retry: ratelimit (RateLimit t=, the Hub's "
                         "way), retry-after (seconds), retry-after-date (HTTP date), none, "
                         "hostile (t=999999999)")
    ap.add_argument("--fault", action="append", help="a fault, as JSON (repeatable)")
    ap.add_argument("--random-errors", type=float, default=0.0,
                    help="answer this fraction of all requests (Hub and CDN) with a random 429 "
                         "(t=1), 500, 502 or 503")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.root):
        ap.error("--root %s: not a directory" % args.root)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.host.startswith("127."):
        ap.error("--host %s: only loopback addresses are allowed" % args.host)
    if args.lfs_threshold < 0 or args.page_size < 1 or args.cdn_ttl < 0:
        ap.error("--lfs-threshold, --cdn-ttl must be >= 0 and --page-size >= 1")
    try:
        parse_quota(args.quota)
        parse_quota(args.anon_quota)
        for spec in args.fault or []:
            Fault(0, json.loads(spec))
    except ValueError as e:
        ap.error(str(e))
    if args.blob_dir:
        os.makedirs(args.blob_dir, exist_ok=True)
    return args


def start(args):
    """Both listeners bound and serving (the CDN in a thread), ports written: the Hub server."""
    hub = Hub(args)
    host = "127.0.0.1" if args.host == "localhost" else args.host
    if ":" in host:
        Server.address_family = socket.AF_INET6
    hub_srv = Server((host, args.port), hub, "hub")
    cdn_srv = Server((host, args.cdn_port), hub, "cdn")
    hub.port, hub.cdn_port = hub_srv.server_port, cdn_srv.server_port
    threading.Thread(target=cdn_srv.serve_forever, daemon=True).start()
    if args.cdn_port_file:
        write_port_file(args.cdn_port_file, hub.cdn_port)
    if args.port_file:
        write_port_file(args.port_file, hub.port)
    sys.stderr.write("hubserver: serving %s on http://%s:%d (CDN on port %d)\n"
                     % (args.root, host, hub.port, hub.cdn_port))
    return hub, hub_srv


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # SIGTERM (what test scripts send) is a normal way to stop: exit 0 with the log complete.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        hub, hub_srv = start(args)
    except (RepoError, OSError) as e:
        sys.stderr.write("hubserver: %s\n" % e)
        return 2
    try:
        hub_srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.drain(2.0)
        hub.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
