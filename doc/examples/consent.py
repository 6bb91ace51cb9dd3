#!/usr/bin/env python3
"""Record a newsletter consent from a web form, check what may be done, show a refused call.

Usage: consent.py CONTACT_ID   (the connection comes from the PG* environment variables)
Prints one JSON document; doc/applications.md explains the calls, make test runs this file.
"""
import json
import sys

import psycopg
from psycopg.types.json import Jsonb


def main(contact_id: str) -> dict:
    out = {}
    with psycopg.connect() as conn:
        # One transaction: the purpose is declared for what it does, the consent is
        # recorded with its proof, or nothing is.
        with conn.transaction():
            conn.execute("SET LOCAL crm_gdpr.purpose = 'newsletter'")
            (out["ledger_id"],) = conn.execute(
                "SELECT gdpr.grant_consent(%s, 'newsletter', 'web', %s)",
                (contact_id, Jsonb({"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "form": "footer-v3", "notice_version": 1})),
            ).fetchone()
        (out["may_process"],) = conn.execute(
            "SELECT gdpr.may_process(%s, 'newsletter')", (contact_id,)).fetchone()
        try:
            conn.execute("SELECT gdpr.grant_consent(%s, 'newsletter', 'fax', '{}')", (contact_id,))
        except psycopg.errors.InvalidParameterValue as e:  # SQLSTATE 22023
            out["refused"] = {"sqlstate": e.diag.sqlstate, "message": e.diag.message_primary,
                              "hint": e.diag.message_hint}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), sort_keys=True))
