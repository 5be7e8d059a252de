#!/usr/bin/env python3
"""Real English sentences for the `hnsw --texts` bench, from text already on
the machine: manual pages (roff stripped), doc comments and Markdown files of
the Rust crates in Cargo's registry, Python docstrings and comments, and
comments in other source files (JavaScript, Go, C, Perl, YAML), and the
documentation strings of AWS service models (botocore's `service-2.json`)
in directories named on the command line.

Paragraphs are joined, split into sentences, kept if they read as prose
(40-400 characters, at least five words, mostly letters), deduplicated, and
written in a seeded shuffled order, one per line. The output depends on what
is installed, so RESULTS.md records the line count and sha256 of the file a
run used.

    pip download --no-deps botocore==1.35.99 -d /tmp/corpus-src
    python3 -m zipfile -e /tmp/corpus-src/botocore-1.35.99-py3-none-any.whl /tmp/corpus-src/boto
    python3 bench/corpus.py /tmp/corpus-src/boto > /tmp/sentences.txt
"""

import gzip
import hashlib
import json
import os
import re
import sys

HOME = os.path.expanduser("~")
ROOTS = {
    "man": ["/usr/share/man"],
    "rust": [os.path.join(HOME, ".cargo/registry/src")],
    "python": ["/usr/lib", "/usr/local/lib", HOME],
    "code": ["/usr/lib", "/usr/share", HOME],
    "api": [],
}
HTML_TAG = re.compile(r"<[^>]+>")
CODE = (".js", ".ts", ".go", ".java", ".c", ".h", ".cc", ".cpp", ".pm", ".yaml")
SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
ROFF_ESCAPE = re.compile(r"\\f[BIRP0-9]|\\f\(..|\\\(..|\\[&e|^%]|\\s[-+]?\d")
MARKUP = re.compile(r"`+|\*\*|__|\[([^\]]*)\]\([^)]*\)")
PROSE = re.compile(r"^[A-Za-z][^{}<>|=\\#@$;]*[A-Za-z.!?)]$")


def files(root, suffixes):
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(suffixes):
                yield os.path.join(dirpath, name)


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as f:
            return f.read(2_000_000)
    except (OSError, UnicodeDecodeError, EOFError):
        return ""


def paragraphs_of_man(text):
    para = []
    for line in text.splitlines():
        if line.startswith((".", "'")) or not line.strip():
            if para:
                yield " ".join(para)
                para = []
            continue
        para.append(ROFF_ESCAPE.sub("", line).replace("\\-", "-"))
    if para:
        yield " ".join(para)


def paragraphs_of_comments(text, marker):
    para = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(marker):
            body = stripped[len(marker):].strip()
            if body:
                para.append(body)
                continue
        if para:
            yield " ".join(para)
            para = []
    if para:
        yield " ".join(para)


def paragraphs_of_markdown(text):
    for block in re.split(r"\n\s*\n", text):
        if not block.lstrip().startswith(("#", "```", "|", "-", "*", ">", "<")):
            yield " ".join(block.split())


def paragraphs_of_docstrings(text):
    for match in re.finditer(r'"""(.*?)"""', text, re.S):
        yield from paragraphs_of_markdown(match.group(1))


def paragraphs_of_api_docs(node):
    """The `documentation` strings of an AWS service model (HTML)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "documentation" and isinstance(value, str):
                for block in re.split(r"</?p>|<li>|</li>", value):
                    yield " ".join(HTML_TAG.sub(" ", block).split())
            else:
                yield from paragraphs_of_api_docs(value)
    elif isinstance(node, list):
        for value in node:
            yield from paragraphs_of_api_docs(value)


def sentences(paragraph):
    paragraph = MARKUP.sub(lambda m: m.group(1) or "", paragraph)
    for s in SENTENCE_END.split(" ".join(paragraph.split())):
        letters = sum(c.isalpha() or c == " " for c in s)
        if (
            32 <= len(s) <= 400
            and len(s.split()) >= 5
            and letters >= 0.85 * len(s)
            and PROSE.match(s)
        ):
            yield s


def source(kind):
    for root in ROOTS[kind]:
        if kind == "man":
            for path in files(root, (".gz",)):
                yield from paragraphs_of_man(read(path))
        elif kind == "rust":
            for path in files(root, (".rs",)):
                text = read(path)
                yield from paragraphs_of_comments(text, "///")
                yield from paragraphs_of_comments(text, "//!")
            for path in files(root, (".md",)):
                yield from paragraphs_of_markdown(read(path))
        elif kind == "api":
            for path in files(root, ("service-2.json", "service-2.json.gz")):
                try:
                    yield from paragraphs_of_api_docs(json.loads(read(path) or "{}"))
                except ValueError:
                    pass
        elif kind == "python":
            for path in files(root, (".py",)):
                text = read(path)
                yield from paragraphs_of_docstrings(text)
                yield from paragraphs_of_comments(text, "#")
        else:
            for path in files(root, CODE):
                text = read(path)
                for marker in ("//", "*", "#"):
                    yield from paragraphs_of_comments(text, marker)


def main():
    # Extra directories (an unpacked botocore wheel, say) are read for every kind.
    for kind in ROOTS:
        ROOTS[kind] += sys.argv[1:]
    seen = {}
    for kind in ROOTS:
        before = len(seen)
        for paragraph in source(kind):
            for s in sentences(paragraph):
                # A seeded order that does not depend on file order.
                key = hashlib.blake2b(s.encode(), digest_size=8).digest()
                seen.setdefault(key, s)
        print(f"{kind}: {len(seen) - before} sentences", file=sys.stderr)
    for key in sorted(seen):
        print(seen[key])
    print(f"total: {len(seen)} sentences", file=sys.stderr)


if __name__ == "__main__":
    main()
