"""``kiemdich keys|token|contract``: issuing keys, pass tokens and schemas from the shell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from contract.ids import new_declaration_id
from contract.token import HOUR, REASON_TEXT, Keyring, SigningKey, issue_token, verify_token


def _keys_generate(args: argparse.Namespace) -> int:
    key_path = Path(args.out)
    if key_path.exists() and not args.force:
        print(f"lỗi / error: {key_path} đã tồn tại / already exists (--force)", file=sys.stderr)
        return 2
    key = SigningKey.generate(args.kid)
    key.save(key_path)
    ring_path = Path(args.keyring)
    ring = Keyring.load(ring_path) if ring_path.exists() else Keyring()
    ring.add(key.public())
    ring.save(ring_path)
    print(f"khóa ký / signing key kid={key.kid}: {key_path} (giữ bí mật / keep secret)")
    print(f"vòng khóa công khai / public keyring ({len(ring)} keys): {ring_path}")
    return 0


def _token_issue(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    start = int(time.time()) if args.issued_at is None else args.issued_at
    token = issue_token(
        key,
        declaration_id=args.declaration_id or new_declaration_id(),
        issued_at=start,
        expires_at=start + args.hours * HOUR,
    )
    print(token)
    if args.qr:
        import segno  # only needed when drawing; not an edge dependency

        segno.make(token, error="m", boost_error=False, micro=False).save(args.qr, scale=8)
        print(f"QR: {args.qr}", file=sys.stderr)
    return 0


def _token_verify(args: argparse.Namespace) -> int:
    ring = Keyring.load(args.keyring)
    revoked = (
        frozenset(int(x) for x in args.revoked.split(",") if x) if args.revoked else frozenset()
    )
    token = sys.stdin.read().strip() if args.token == "-" else args.token
    result = verify_token(token, ring, now=args.now, revoked=revoked, leeway_s=args.leeway)
    vi, en = REASON_TEXT[result.reason]
    print(f"{result.reason.value}: {vi} / {en}" + (f" ({result.detail})" if result.detail else ""))
    if result.claims:
        c = result.claims
        print(
            f"  kid={c.kid} declaration={c.declaration_id} "
            f"issued={time.strftime('%Y-%m-%d %H:%M', time.gmtime(c.issued_at))}Z "
            f"expires={time.strftime('%Y-%m-%d %H:%M', time.gmtime(c.expires_at))}Z"
        )
    return 0 if result.ok else 1


def _schemas(args: argparse.Namespace) -> int:
    from contract.schema import export

    for path in export(Path(args.out)):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys``, ``token`` and ``contract`` groups."""
    keys = sub.add_parser("keys", help="issuing keys and the public keyring edge devices hold")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    gen = keys_sub.add_parser(
        "generate", help="make an Ed25519 issuing key and add its public half to a keyring"
    )
    gen.add_argument("--kid", type=int, required=True, help="key id 0..255 (rotate by new id)")
    gen.add_argument("--out", default="var/keys/issuer.json", help="private key file (0600)")
    gen.add_argument("--keyring", default="var/keys/keyring.json", help="public keyring to update")
    gen.add_argument("--force", action="store_true", help="overwrite an existing key file")
    gen.set_defaults(func=_keys_generate)

    token = sub.add_parser("token", help="issue or check a pass token (the QR text)")
    token_sub = token.add_subparsers(dest="token_cmd", required=True)
    issue = token_sub.add_parser("issue", help="sign a pass token for a declaration")
    issue.add_argument("--key", default="var/keys/issuer.json")
    issue.add_argument("--declaration-id", type=int, help="default: a new random id")
    issue.add_argument("--hours", type=int, default=24 * 7, help="validity (default 7 days)")
    issue.add_argument("--issued-at", type=int, help="Unix seconds (default: now)")
    issue.add_argument("--qr", help="also write the QR code as PNG/SVG to this path")
    issue.set_defaults(func=_token_issue)
    verify = token_sub.add_parser("verify", help="check a token offline; exit 0 only if valid")
    verify.add_argument("token", help="the token text, or - to read stdin")
    verify.add_argument("--keyring", default="var/keys/keyring.json")
    verify.add_argument("--revoked", help="comma-separated revoked declaration ids")
    verify.add_argument("--now", type=int, help="Unix seconds (default: now)")
    verify.add_argument("--leeway", type=int, default=0, help="tolerated clock skew, seconds")
    verify.set_defaults(func=_token_verify)

    contract = sub.add_parser("contract", help="the edge/aggregator contract")
    contract_sub = contract.add_subparsers(dest="contract_cmd", required=True)
    schemas = contract_sub.add_parser("schemas", help="write the wire messages' JSON Schemas")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=_schemas)
