#!/usr/bin/env node
// Record a newsletter consent from a web form, check what may be done, show a refused call.
// Usage: consent.js CONTACT_ID   (the connection comes from the PG* environment variables)
// Prints one JSON document; doc/applications.md explains the calls, make test runs this file.
'use strict';
const { Client } = require('pg');

async function main(contactId) {
  const out = {};
  const client = new Client();
  await client.connect();
  try {
    // One transaction: the purpose is declared for what it does, the consent is
    // recorded with its proof, or nothing is.
    await client.query('BEGIN');
    await client.query("SET LOCAL crm_gdpr.purpose = 'newsletter'");
    const granted = await client.query(
      "SELECT gdpr.grant_consent($1, 'newsletter', 'web', $2) AS id",
      [contactId, { ip: '203.0.113.7', user_agent: 'Mozilla/5.0', form: 'footer-v3', notice_version: 1 }]);
    await client.query('COMMIT');
    out.ledger_id = Number(granted.rows[0].id);
    const may = await client.query("SELECT gdpr.may_process($1, 'newsletter') AS ok", [contactId]);
    out.may_process = may.rows[0].ok;
    try {
      await client.query("SELECT gdpr.grant_consent($1, 'newsletter', 'fax', '{}')", [contactId]);
    } catch (e) {
      out.refused = { sqlstate: e.code, message: e.message, hint: e.hint };
    }
  } finally {
    await client.end();
  }
  return out;
}

main(process.argv[2]).then(
  (out) => console.log(JSON.stringify(out)),
  (e) => { console.error(e); process.exit(1); });
