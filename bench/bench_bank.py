"""Bank statement parser benchmark: MB/s and entries/s beside raw read-and-tokenize speed and peak memory.

Why these baselines: a parser's speed means little alone. The same machine, in the same run, also reads and
tokenizes the same bytes doing no work (split lines for MT940, a bare defused ``iterparse`` for camt), and
the ``mt-940`` library parses the MT940 set (on a slice, as it is much slower). Both of our parsers are
measured as they are used on real files: streaming from the open file (``mt940.iter_stream``,
``camt.iter_statements``). Peak memory is measured in a fresh subprocess per file size, so a flat number
across sizes shows that the parser holds one statement, never the file.

    uv run python bench/bench_bank.py            # 200 MB per format (BENCH_BANK_MB to change)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "var" / "bench"
MB = int(os.environ.get("BENCH_BANK_MB", "200"))
LIB_MB = int(os.environ.get("BENCH_MT940LIB_MB", str(max(1, min(MB, 20)))))
ENTRIES_PER_STATEMENT = 200


def _mt940_statement(n: int) -> str:
    lines = [
        f":20:BENCH{n:08d}",
        ":25:DE89370400440532013000",
        f":28C:{n % 99999 + 1}/1",
        ":60F:C240102EUR100000,00",
    ]
    bal = 10_000_000
    for i in range(ENTRIES_PER_STATEMENT):
        cents = 1000 + (n * 7 + i * 13) % 500_000
        sign = "C" if i % 3 else "D"
        bal += cents if sign == "C" else -cents
        lines.append(f":61:2401020102{sign}{cents // 100},{cents % 100:02d}NTRFNONREF//B{n:06d}{i:04d}")
        lines.append(
            f":86:166?00SEPA-GUTSCHRIFT?109310?20EREF+E2E{n}-{i}?21SVWZ+Rechnung {n}-{i} vom 02.01."
            f"?22Kundennr 4711?30COBADEFFXXX?31DE02120300000000202051?32Muster GmbH"
        )
    sign = "C" if bal >= 0 else "D"
    lines.append(f":62F:{sign}240102EUR{abs(bal) // 100},{abs(bal) % 100:02d}")
    lines.append("-")
    return "\r\n".join(lines) + "\r\n"


def _camt_statement(n: int) -> str:
    parts = [
        f"<Stmt><Id>BENCH{n:08d}</Id><ElctrncSeqNb>{n + 1}</ElctrncSeqNb>"
        "<CreDtTm>2024-01-02T18:00:00+01:00</CreDtTm>"
        "<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>"
        '<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100000.00</Amt>'
        "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-01-01</Dt></Dt></Bal>"
    ]
    bal = 10_000_000
    ntry = []
    for i in range(ENTRIES_PER_STATEMENT):
        cents = 1000 + (n * 7 + i * 13) % 500_000
        credit = bool(i % 3)
        bal += cents if credit else -cents
        party = "Dbtr" if credit else "Cdtr"
        ntry.append(
            f'<Ntry><Amt Ccy="EUR">{cents // 100}.{cents % 100:02d}</Amt>'
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts>BOOK</Sts>"
            "<BookgDt><Dt>2024-01-02</Dt></BookgDt><ValDt><Dt>2024-01-02</Dt></ValDt>"
            f"<AcctSvcrRef>B{n:06d}{i:04d}</AcctSvcrRef>"
            "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
            f"<NtryDtls><TxDtls><Refs><EndToEndId>E2E{n}-{i}</EndToEndId></Refs>"
            f"<RltdPties><{party}><Nm>Muster GmbH</Nm></{party}><{party}Acct><Id><IBAN>DE02120300000000202051"
            f"</IBAN></Id></{party}Acct></RltdPties>"
            "<RltdAgts><DbtrAgt><FinInstnId><BIC>COBADEFFXXX</BIC></FinInstnId></DbtrAgt></RltdAgts>"
            f"<RmtInf><Ustrd>Rechnung {n}-{i} vom 02.01. Kundennr 4711</Ustrd></RmtInf></TxDtls></NtryDtls>"
            "</Ntry>\n"
        )
    parts.append(
        '<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">'
        f"{abs(bal) // 100}.{abs(bal) % 100:02d}</Amt><CdtDbtInd>{'CRDT' if bal >= 0 else 'DBIT'}</CdtDbtInd>"
        "<Dt><Dt>2024-01-02</Dt></Dt></Bal>\n"
    )
    return "".join(parts) + "".join(ntry) + "</Stmt>\n"


def generate(kind: str, mb: int) -> Path:
    """Write (once) a file of about ``mb`` megabytes; reused by later runs of the same size."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / (f"mt940_{mb}mb.sta" if kind == "mt940" else f"camt053_{mb}mb.xml")
    if path.exists() and path.stat().st_size >= mb * 1_000_000:
        return path
    target = mb * 1_000_000
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="ascii", newline="") as f:
        size = 0
        if kind == "camt":
            head = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
                "<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2024-01-02T18:00:00+01:00</CreDtTm></GrpHdr>\n"
            )
            size += f.write(head)
        n = 0
        while size < target:
            size += f.write(_mt940_statement(n) if kind == "mt940" else _camt_statement(n))
            n += 1
        if kind == "camt":
            f.write("</BkToCstmrStmt></Document>\n")
    tmp.replace(path)
    return path


def _rate(nbytes: int, entries: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 2),
        "MB/s": round(nbytes / 1e6 / seconds, 1),
        "entries/s": round(entries / seconds),
    }


def bench_mt940(path: Path) -> dict[str, dict[str, float]]:
    import codecs

    from connectors.bank import mt940

    size = path.stat().st_size
    t = time.perf_counter()
    text = path.read_bytes().decode("utf-8")
    n = sum(1 for line in text.split("\n") if line.startswith(":61:"))
    raw = _rate(size, n, time.perf_counter() - t)
    del text

    # the same tokenizing as a stream: 1 MiB reads, incremental decoding, split lines (what iter_stream reads)
    t = time.perf_counter()
    n_stream = 0
    dec = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines = (tail + dec.decode(chunk)).split("\n")
            tail = lines.pop()
            n_stream += sum(1 for line in lines if line.startswith(":61:"))
    raw_stream = _rate(size, n_stream, time.perf_counter() - t)

    t = time.perf_counter()
    count = 0
    checked = 0
    with path.open("rb") as f:
        for s in mt940.iter_stream(f, source=str(path)):
            count += len(s.entries)
            checked += s.balance_check == "ok"
    ours = _rate(size, count, time.perf_counter() - t)
    assert count == n == n_stream, (count, n, n_stream)

    import mt940 as lib  # the mt-940 library, on a slice (it is much slower)

    with path.open("rb") as f:
        chunk = f.read(LIB_MB * 1_000_000)
    chunk = chunk[: chunk.rfind(b"\r\n-\r\n") + 5]
    t = time.perf_counter()
    tx = lib.models.Transactions()
    tx.parse(chunk.decode("utf-8"))
    lib_rate = _rate(len(chunk), len(tx.transactions), time.perf_counter() - t)
    return {
        "raw read+split lines": raw,
        "raw stream read+decode+split": raw_stream,
        "ours (archive-hub, streaming)": {**ours, "statements_balanced": checked},
        f"mt-940 5.1.1 (first {len(chunk) / 1e6:.0f} MB)": lib_rate,
    }


def bench_camt(path: Path) -> dict[str, dict[str, float]]:
    from lxml import etree

    from connectors.bank import camt

    size = path.stat().st_size
    t = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for _ev, el in etree.iterparse(
            f, events=("end",), resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False
        ):
            if el.tag.endswith("}Ntry"):
                n += 1
                parent = el.getparent()
                el.clear()
                if parent is not None:
                    parent.remove(el)
            elif el.tag.endswith("}Stmt"):
                el.clear()
                el.getparent().remove(el)
    raw = _rate(size, n, time.perf_counter() - t)

    t = time.perf_counter()
    count = checked = 0
    with path.open("rb") as f:
        for s in camt.iter_statements(f, source=str(path)):
            count += len(s.entries)
            checked += s.balance_check == "ok"
    ours = _rate(size, count, time.perf_counter() - t)
    assert count == n, (count, n)
    return {
        "raw bare iterparse": raw,
        "ours (archive-hub, streaming)": {**ours, "statements_balanced": checked},
    }


def child_peak(kind: str, path: str) -> None:
    """Run in a fresh process: stream the file, print entries and peak RSS (KiB) as JSON."""
    from connectors.bank import camt, mt940

    count = 0
    if kind == "camt":
        with open(path, "rb") as f:
            for s in camt.iter_statements(f, source=path):
                count += len(s.entries)
    else:
        with open(path, "rb") as f:
            for s in mt940.iter_stream(f, source=path):
                count += len(s.entries)
    print(json.dumps({"entries": count, "peak_rss_mib": round(_peak_kib() / 1024, 1)}))


def _peak_kib() -> int:
    """VmHWM (peak RSS of this process image); ru_maxrss is inherited across fork+exec on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak(kind: str, path: Path) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout)


def main() -> None:
    small_mb = max(1, MB // 8)
    print(f"archive-hub bank benchmark: {MB} MB per format (BENCH_BANK_MB), python {sys.version.split()[0]}")
    t = time.perf_counter()
    files = {k: generate(k, MB) for k in ("mt940", "camt")}
    small = {k: generate(k, small_mb) for k in ("mt940", "camt")}
    print(f"generated/reused under {OUT.relative_to(REPO)} in {time.perf_counter() - t:.1f}s")
    for kind, fn in (("mt940", bench_mt940), ("camt", bench_camt)):
        path = files[kind]
        print(
            f"\n{kind.upper() if kind == 'mt940' else 'camt.053'}: {path.name} ({path.stat().st_size / 1e6:.0f} MB)"
        )
        for name, r in fn(path).items():
            extra = f"  statements balanced: {r['statements_balanced']}" if "statements_balanced" in r else ""
            print(
                f"  {name:36s} {r['MB/s']:8.1f} MB/s {r['entries/s']:>10,.0f} entries/s "
                f"({r['seconds']:.2f}s){extra}"
            )
    print("\npeak memory, fresh process per file (VmHWM):")
    for kind in ("camt", "mt940"):
        for path in (small[kind], files[kind]):
            p = peak(kind, path)
            print(
                f"  {kind:6s} {path.stat().st_size / 1e6:7.0f} MB file: {p['peak_rss_mib']:8.1f} MiB peak, "
                f"{p['entries']:,} entries"
            )
    print("  (both stream from the file, one statement at a time: peak stays flat as the file grows)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_peak(sys.argv[2], sys.argv[3])
    else:
        main()
