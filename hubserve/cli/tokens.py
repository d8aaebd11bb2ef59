"""``hubserve token create|list|revoke``: local admin commands that act on the configured token
store directly (no server)."""

from __future__ import annotations

import argparse
import sys
import time

from hubserve.cli.serve import app_config
from hubserve.tokens.auth import AuthStore, open_auth_store
from hubserve.tokens.principal import ROLES


def _auth_store(args: argparse.Namespace) -> AuthStore:
    return open_auth_store(app_config(args.config).auth.db)


def _token_create(args: argparse.Namespace) -> int:
    _, token = _auth_store(args).create_token(args.user, role=args.role, org=args.org)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    for t in _auth_store(args).list_tokens():
        state = "revoked" if t["revoked"] else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t["created"]))
        print(f"{t['id']}\t{t['user']}\t{','.join(t['orgs']) or '-'}\t{t['role']}\t{t['hint']}\t{created}\t{state}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    if not _auth_store(args).revoke(args.id):
        print(f"hubserve: no active token with id {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def add_parser(sub) -> None:
    """Adds ``token create|list|revoke`` to the command line.

    Args:
        sub: the subparsers of the ``hubserve`` parser.
    """
    token = sub.add_parser("token", help="manage access tokens (acts on the configured token store)")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="create a token; prints only the token, once")
    create.add_argument("--user", required=True)
    create.add_argument("--org", help="make the user a member of this organisation")
    create.add_argument("--role", choices=ROLES, default="read")
    create.set_defaults(func=_token_create)
    token_sub.add_parser("list", help="list tokens (never their values)").set_defaults(func=_token_list)
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_token_revoke)
    for parser_ in token_sub.choices.values():
        parser_.add_argument("--config", default="configs/default.yaml")
