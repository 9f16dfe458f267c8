"""Byte-for-byte through the mount: the real tokenizer files of ../shared/data/tokenizers and
the models of ../shared/data/models, each folder a repo, with small blocks so that files span
many blocks. Skipped (exit 77) when ../shared/data is absent."""
import os
import shutil

import fstest


class Shared(fstest.FsTest):
    def test_tokenizers_and_models(self):
        fstest.require_shared()
        root = os.path.join(self.tmp, "repos")
        for kind in ("tokenizers", "models"):
            src = os.path.join(fstest.SHARED, kind)
            for name in sorted(os.listdir(src)):
                if os.path.isdir(os.path.join(src, name)):
                    shutil.copytree(os.path.join(src, name), os.path.join(root, kind, name),
                                    symlinks=False)
        h = self.hub(root, "--lfs-threshold", "1000000")
        m = self.mount(h.url, None, "--block-size", "256K")
        for kind in ("tokenizers", "models"):
            for name in os.listdir(os.path.join(root, kind)):
                self.assertTreesEqual(os.path.join(root, kind, name), m.path(kind, name))
            # an org lists the repos that are cached, which now is all of them
            self.assertEqual(sorted(os.listdir(m.path(kind))),
                             sorted(os.listdir(os.path.join(root, kind))))
        log = h.requests()
        # content-addressed: identical files in several repos are fetched once
        contents = {fstest.sha256_file(os.path.join(d, f)) for d, _, fs in os.walk(root)
                    for f in fs if os.path.getsize(os.path.join(d, f))}
        self.assertEqual(len([r for r in log if r["bucket"] == "resolvers"]), len(contents))


if __name__ == "__main__":
    fstest.main()
