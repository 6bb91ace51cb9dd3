-- The compliance report: one self-contained document an auditor can print,
-- sign and file (HTML with inline SVG charts and CSS, no script and no
-- external asset; or Markdown).  The content is gathered once as JSON
-- (gdpr._report_content), then rendered; the document is dated and ends
-- with the SHA-256 of everything before its digest marker, which
-- gdpr.verify_report() checks.

-- Text made safe for HTML and SVG.
CREATE FUNCTION gdpr._html(s text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                         '"', '&quot;'), '''', '&#39;');

-- A value of a report table as text: arrays joined, NULL as a dash.
CREATE FUNCTION gdpr._report_cell(v jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE jsonb_typeof(v) WHEN 'null' THEN '—' WHEN 'string' THEN v #>> '{}'
              WHEN 'array' THEN coalesce(nullif((SELECT string_agg(coalesce(e #>> '{}', '—'), '; ')
                                                   FROM jsonb_array_elements(v) e), ''), '—')
              ELSE coalesce(v #>> '{}', '—') END;

-- A horizontal bar chart, stacked when there are several series:
-- chart = {"title", "labels": [...], "series": [{"name", "values": [...]}]}.
CREATE FUNCTION gdpr._svg_bars(chart jsonb) RETURNS text
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  colours text[] := ARRAY['#2e7d32', '#f9a825', '#c62828', '#1565c0', '#6a1b9a', '#00838f', '#8d6e63'];
  labels text[] := ARRAY(SELECT jsonb_array_elements_text(chart -> 'labels'));
  n_series int := jsonb_array_length(chart -> 'series');
  total numeric;
  peak numeric := 0;
  x numeric;
  w numeric;
  v numeric;
  row_h int := 24;
  left_w int := 230;
  bar_w int := 380;
  legend_h int := CASE WHEN n_series > 1 THEN 22 ELSE 0 END;
  h int;
  svg text;
  i int;
  s int;
BEGIN
  FOR i IN 1 .. coalesce(cardinality(labels), 0) LOOP
    SELECT sum((e -> 'values' ->> (i - 1))::numeric) INTO total FROM jsonb_array_elements(chart -> 'series') e;
    peak := greatest(peak, coalesce(total, 0));
  END LOOP;
  h := 30 + legend_h + row_h * greatest(coalesce(cardinality(labels), 0), 1);
  svg := format('<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="680" height="%s" viewBox="0 0 680 %s" role="img" aria-label="%s">',
                h, h, gdpr._html(chart ->> 'title'))
      || format('<text x="0" y="16" class="ct">%s</text>', gdpr._html(chart ->> 'title'));
  FOR s IN 1 .. n_series LOOP
    CONTINUE WHEN n_series = 1;
    svg := svg || format('<rect x="%s" y="26" width="12" height="12" fill="%s"/><text x="%s" y="36" class="cl">%s</text>',
                         (s - 1) * 150, coalesce(chart -> 'series' -> (s - 1) ->> 'colour', colours[1 + (s - 1) % 7]), (s - 1) * 150 + 16,
                         gdpr._html(chart -> 'series' -> (s - 1) ->> 'name'));
  END LOOP;
  IF coalesce(cardinality(labels), 0) = 0 THEN
    RETURN svg || format('<text x="0" y="%s" class="cl">nothing to show</text></svg>', 44 + legend_h);
  END IF;
  FOR i IN 1 .. cardinality(labels) LOOP
    svg := svg || format('<text x="0" y="%s" class="cl">%s</text>', 30 + legend_h + (i - 1) * row_h + 15,
                         gdpr._html(left(labels[i], 34)));
    x := left_w;
    total := 0;
    FOR s IN 1 .. n_series LOOP
      v := coalesce((chart -> 'series' -> (s - 1) -> 'values' ->> (i - 1))::numeric, 0);
      total := total + v;
      CONTINUE WHEN v = 0;
      w := round(bar_w * v / nullif(peak, 0), 1);
      svg := svg || format('<rect x="%s" y="%s" width="%s" height="16" fill="%s"><title>%s: %s</title></rect>',
                           x, 30 + legend_h + (i - 1) * row_h + 3, greatest(w, 1),
                           coalesce(chart -> 'series' -> (s - 1) ->> 'colour', colours[1 + (s - 1) % 7]),
                           gdpr._html(chart -> 'series' -> (s - 1) ->> 'name'), v);
      x := x + greatest(w, 1);
    END LOOP;
    svg := svg || format('<text x="%s" y="%s" class="cl">%s</text>', x + 6, 30 + legend_h + (i - 1) * row_h + 15, total);
  END LOOP;
  RETURN svg || '</svg>';
END
$$;

-- A report table: {"columns": [...], "rows": [[...], ...]} from a query's
-- rows as JSON arrays.
CREATE FUNCTION gdpr._report_table(columns text[], rows jsonb) RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN jsonb_build_object('columns', to_jsonb(columns), 'rows', coalesce(rows, '[]'));

-- Everything the report says, gathered once.
CREATE FUNCTION gdpr._report_content(tenant text DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c gdpr.controller;
  v record;
  sections jsonb := '[]';
  summary jsonb := '[]';
  n bigint;
  m bigint;
BEGIN
  SELECT * INTO c FROM gdpr.controller;

  -- Art. 30: one card per purpose.
  sections := sections || jsonb_build_object('id', 'register', 'title', 'Record of processing activities (Art. 30)',
    'intro', format('Controller: %s. Representative: %s. Data protection officer: %s.',
                    coalesce(c.name || coalesce(', ' || c.address, '') || coalesce(', ' || c.contact, ''), 'not set'),
                    coalesce(c.representative, 'none'), coalesce(c.dpo_name || ', ' || c.dpo_contact, 'not set')),
    'cards', (SELECT jsonb_agg(jsonb_build_object('title', p.purpose || ' — ' || p.description,
                'table', gdpr._report_table(ARRAY['Entry', 'Content'], jsonb_build_array(
                  jsonb_build_array('Legal basis', p.legal_basis),
                  jsonb_build_array('Information notice', 'version ' || p.notice_version || ', SHA-256 ' || left(p.notice_sha256, 16) || '…'),
                  jsonb_build_array('Categories of data subjects', p.subject_categories),
                  jsonb_build_array('Categories of personal data', p.data_categories),
                  jsonb_build_array('Personal data', p.personal_data),
                  jsonb_build_array('Recipients', p.recipients_detail),
                  jsonb_build_array('Transfers outside the EEA', p.transfers_outside_eea),
                  jsonb_build_array('Retention', p.retention),
                  jsonb_build_array('Security measures', p.security_measures),
                  jsonb_build_array('DPIA', CASE WHEN p.dpia_required THEN 'required: ' ELSE '' END || p.dpia_status)))) ORDER BY p.purpose)
                FROM gdpr.processing_register p WHERE gdpr._in_tenant(p.tenant, _report_content.tenant)));
  SELECT count(*) INTO n FROM gdpr.processing_register p
   WHERE cardinality(p.personal_data) = 0 AND gdpr._in_tenant(p.tenant, _report_content.tenant);
  summary := summary || jsonb_build_array(jsonb_build_array('Purposes in the register',
               (SELECT count(*) FROM gdpr.purposes x WHERE gdpr._in_tenant(x.tenant, _report_content.tenant)), CASE WHEN c.name IS NULL THEN 'controller not set' WHEN n > 0
               THEN n || ' without classified data' ELSE 'ok' END));

  sections := sections || jsonb_build_object('id', 'processors', 'title', 'Recipients, processors and transfers (Art. 28, 30(1)(d)(e), 44-49)',
    'table', gdpr._report_table(ARRAY['Recipient', 'Country', 'Role', 'Engaged by', 'Contract (DPA)', 'Purposes', 'Transfer safeguard'],
      (SELECT jsonb_agg(jsonb_build_array(x.name, x.country, x.role, x.processor,
                                          concat_ws(' of ', x.dpa_reference, x.dpa_signed_on), x.purposes,
                                          CASE WHEN x.outside_eea THEN x.safeguard ELSE 'inside the EEA' END) ORDER BY x.name)
         FROM (SELECT r.name, r.country, r.role, r.processor, r.dpa_reference, r.dpa_signed_on, r.safeguard,
                      r.outside_eea, array_agg(r.purpose ORDER BY r.purpose) AS purposes
                 FROM gdpr.recipients r JOIN gdpr.purposes rp ON rp.code = r.purpose
                WHERE gdpr._in_tenant(rp.tenant, _report_content.tenant) GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) x)));
  SELECT count(*) INTO n FROM gdpr.recipients r WHERE r.role = 'third_party' AND r.dpa_reference IS NULL;
  summary := summary || jsonb_build_array(jsonb_build_array('Recipients', (SELECT count(DISTINCT r.name) FROM gdpr.recipients r),
               CASE WHEN n > 0 THEN n || ' without a contract on file' ELSE 'ok' END));

  -- Consent coverage.
  SELECT jsonb_agg(jsonb_build_array(p.code, p.legal_basis, coalesce(s.granted, 0), coalesce(s.unconfirmed, 0),
                                     coalesce(s.expired, 0), coalesce(s.withdrawn, 0), coalesce(s.objected, 0),
                                     coalesce(s.informed, 0), coalesce(s.stale, 0)) ORDER BY p.code) AS rows,
         jsonb_build_object('title', 'Consent and objection per purpose (subjects)',
           'labels', jsonb_agg(p.code ORDER BY p.code),
           'series', jsonb_build_array(
             jsonb_build_object('name', 'granted', 'values', jsonb_agg(coalesce(s.granted, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'unconfirmed', 'values', jsonb_agg(coalesce(s.unconfirmed, 0) + coalesce(s.expired, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'withdrawn', 'values', jsonb_agg(coalesce(s.withdrawn, 0) + coalesce(s.objected, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'informed', 'values', jsonb_agg(coalesce(s.informed, 0) ORDER BY p.code)))) AS chart
    INTO v
    FROM gdpr.purposes p
    LEFT JOIN (SELECT x.purpose, count(*) FILTER (WHERE x.state = 'granted') AS granted,
                      count(*) FILTER (WHERE x.state = 'unconfirmed') AS unconfirmed,
                      count(*) FILTER (WHERE x.state = 'expired') AS expired,
                      count(*) FILTER (WHERE x.state = 'withdrawn') AS withdrawn,
                      count(*) FILTER (WHERE x.state = 'objected') AS objected,
                      count(*) FILTER (WHERE x.state = 'informed') AS informed,
                      count(*) FILTER (WHERE x.stale) AS stale
                 FROM gdpr.consent_status x GROUP BY 1) s ON s.purpose = p.code
   WHERE gdpr._in_tenant(p.tenant, _report_content.tenant);
  sections := sections || jsonb_build_object('id', 'consent', 'title', 'Consent coverage per purpose (Art. 6, 7, 21)',
    'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Purpose', 'Legal basis', 'Granted', 'Unconfirmed', 'Expired', 'Withdrawn', 'Objected',
                                      'Informed', 'On an older notice'], v.rows));

  -- Retention.
  SELECT jsonb_agg(jsonb_build_array(CASE WHEN r.col IS NULL THEN gdpr.qualified_name(r.tbl) || ' (rows)'
                                          ELSE gdpr.qualified_name(r.tbl) || '.' || r.col END
                                     -- a policy with a row scope (issue 20.6) says which rows
                                     || coalesce(' where ' || gdpr._scope_text(r.scope_column, r.scope_values, r.scope_exclude), ''),
                                     r.keep::text, r.action, r.rows_due, r.oldest_due, r.last_purged_at) ORDER BY r.policy_id) AS rows,
         jsonb_build_object('title', 'Rows past their retention period, per policy',
           'labels', jsonb_agg(CASE WHEN r.col IS NULL THEN gdpr.qualified_name(r.tbl) ELSE gdpr.qualified_name(r.tbl) || '.' || r.col END
                               || coalesce(' where ' || gdpr._scope_text(r.scope_column, r.scope_values, r.scope_exclude), '')
                               ORDER BY r.policy_id),
           'series', jsonb_build_array(jsonb_build_object('name', 'past due',
                                                          'values', jsonb_agg(r.rows_due ORDER BY r.policy_id)))) AS chart,
         coalesce(sum(r.rows_due), 0) AS due
    INTO v FROM gdpr.retention_status r;
  sections := sections || jsonb_build_object('id', 'retention', 'title', 'Retention (Art. 5(1)(e))', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Data', 'Kept for', 'Then', 'Rows past due', 'Oldest due since', 'Last purged'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Rows past their retention period', v.due,
               CASE WHEN v.due > 0 THEN 'the purge has work to do' ELSE 'ok' END));

  -- Requests.
  SELECT jsonb_agg(jsonb_build_array(k.kind, x.open, x.due_soon, x.overdue, x.on_time, x.late, x.unverified) ORDER BY k.o) AS rows,
         jsonb_build_object('title', 'Requests of data subjects per kind',
           'labels', jsonb_agg(k.kind ORDER BY k.o),
           'series', jsonb_build_array(
             jsonb_build_object('name', 'answered on time', 'values', jsonb_agg(x.on_time ORDER BY k.o)),
             jsonb_build_object('name', 'open', 'colour', '#1565c0', 'values', jsonb_agg(x.open - x.due_soon - x.overdue ORDER BY k.o)),
             jsonb_build_object('name', 'due soon', 'colour', '#f9a825', 'values', jsonb_agg(x.due_soon ORDER BY k.o)),
             jsonb_build_object('name', 'overdue or late', 'colour', '#c62828', 'values', jsonb_agg(x.overdue + x.late ORDER BY k.o)))) AS chart,
         sum(x.overdue) AS overdue
    INTO v
    FROM unnest(gdpr.request_kinds()) WITH ORDINALITY k(kind, o)
    CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE r.closed_at IS NULL) AS open,
             count(*) FILTER (WHERE r.closed_at IS NULL AND now() BETWEEN r.due_at - interval '7 days' AND r.due_at) AS due_soon,
             count(*) FILTER (WHERE r.closed_at IS NULL AND now() > r.due_at) AS overdue,
             count(*) FILTER (WHERE r.closed_at IS NOT NULL AND r.closed_at <= r.due_at) AS on_time,
             count(*) FILTER (WHERE r.closed_at > r.due_at) AS late,
             count(*) FILTER (WHERE r.closed_at IS NULL AND r.verified_at IS NULL) AS unverified
        FROM gdpr.requests r WHERE r.kind = k.kind) x;
  sections := sections || jsonb_build_object('id', 'requests', 'title', 'Requests of data subjects (Art. 12-22)', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Kind', 'Open', 'Due within 7 days', 'Overdue', 'Answered on time', 'Answered late',
                                      'Open, identity not verified'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Requests overdue', v.overdue,
               CASE WHEN v.overdue > 0 THEN 'answer them now' ELSE 'ok' END));

  -- Breaches.
  sections := sections || jsonb_build_object('id', 'breaches', 'title', 'Personal data breaches (Art. 33, 34)',
    'table', gdpr._report_table(ARRAY['No.', 'Became aware', 'Nature', 'Risk', 'Subjects (approx.)', 'Records (approx.)',
                                      'State', 'Notified', 'Reason', 'People informed (Art. 34)'],
      (SELECT jsonb_agg(jsonb_build_array(b.id, to_char(b.aware_at, 'YYYY-MM-DD HH24:MI'), b.nature, b.risk_level,
                                          b.approx_subjects, b.approx_records, b.state,
                                          concat_ws(', ', to_char(b.notified_at, 'YYYY-MM-DD HH24:MI'), b.reference),
                                          b.outcome_reason,
                                          CASE WHEN b.inform_subjects THEN b.informed_subjects || ' of ' || b.linked_subjects
                                               ELSE 'not required' END) ORDER BY b.id)
         FROM gdpr.breach_register b)));
  SELECT count(*) INTO n FROM gdpr.breach_register b WHERE b.state = 'overdue';
  summary := summary || jsonb_build_array(jsonb_build_array('Breaches', (SELECT count(*) FROM gdpr.breaches),
               CASE WHEN n > 0 THEN n || ' past 72 hours without notification or outcome' ELSE 'ok' END));

  -- DPIA.
  sections := sections || jsonb_build_object('id', 'dpia', 'title', 'Data protection impact assessments (Art. 35)',
    'table', gdpr._report_table(ARRAY['Purpose', 'Criteria met', 'Subjects (estimate)', 'Required', 'Status', 'Assessed on',
                                      'Residual risk', 'Conclusion'],
      (SELECT jsonb_agg(jsonb_build_array(d.purpose, d.criteria, d.estimated_subjects, CASE WHEN d.required THEN 'yes' ELSE 'no' END,
                                          d.status, d.assessed_on, d.residual_risk, d.conclusion) ORDER BY d.purpose)
         FROM gdpr.dpia_register d JOIN gdpr.purposes dp ON dp.code = d.purpose
        WHERE gdpr._in_tenant(dp.tenant, _report_content.tenant))));
  SELECT count(*) INTO n FROM gdpr.dpia_register d JOIN gdpr.purposes dp ON dp.code = d.purpose
   WHERE d.lacking AND gdpr._in_tenant(dp.tenant, _report_content.tenant);
  summary := summary || jsonb_build_array(jsonb_build_array('Processings lacking a required DPIA', n,
               CASE WHEN n > 0 THEN 'carry them out' ELSE 'ok' END));

  -- The access log.
  SELECT * INTO v FROM gdpr.verify_access_log(record_checkpoint => false);   -- a STABLE report writes nothing
  SELECT count(*) INTO n FROM gdpr.mass_read_alarms;
  SELECT count(*) INTO m FROM gdpr.access_violations a WHERE a.at > now() - interval '30 days';
  sections := sections || jsonb_build_object('id', 'access-log', 'title', 'Access log integrity (Art. 5(1)(f), 32)',
    'table', gdpr._report_table(ARRAY['Check', 'Result'], jsonb_build_array(
      jsonb_build_array('Rows and seals verified', CASE WHEN v.ok THEN 'intact' ELSE 'ALTERED' END || ': ' || v.detail),
      jsonb_build_array('Rows checked', v.checked),
      jsonb_build_array('Mass-read alarms now', n),
      jsonb_build_array('Read-queue alarms now (reads dropped or made to wait)', (SELECT count(*) FROM gdpr.log_queue_alarms)),
      jsonb_build_array('Refused accesses in the last 30 days', m),
      jsonb_build_array('Last seal', (SELECT concat_ws(', up to ', s.last_seal::text, s.sealed_upto::text) FROM gdpr.access_log_status s)),
      jsonb_build_array('Rows waiting for a seal', (SELECT s.unsealed_rows FROM gdpr.access_log_status s)))));
  summary := summary || jsonb_build_array(jsonb_build_array('Access log', v.checked,
               CASE WHEN NOT v.ok THEN 'ALTERED: ' || v.detail WHEN n + m > 0 THEN n || ' alarm(s), ' || m || ' refusal(s)'
                    ELSE 'intact' END));

  -- Data quality.
  SELECT jsonb_agg(jsonb_build_array(gdpr.qualified_name(q.tbl) || '.' || q.col, q.check_name, q.problem_rows, q.checked_rows)
                   ORDER BY q.tbl::text, q.col, q.check_name) AS rows,
         jsonb_build_object('title', 'Rows with a data quality problem, per check',
           'labels', jsonb_agg(q.col || ': ' || q.check_name ORDER BY q.tbl::text, q.col, q.check_name),
           'series', jsonb_build_array(jsonb_build_object('name', 'rows',
                       'values', jsonb_agg(q.problem_rows ORDER BY q.tbl::text, q.col, q.check_name)))) AS chart,
         coalesce(sum(q.problem_rows), 0) AS problems
    INTO v FROM gdpr.data_quality(false) q;
  sections := sections || jsonb_build_object('id', 'quality', 'title', 'Data quality (Art. 5(1)(d))', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Column', 'Check', 'Rows at fault', 'Rows checked'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Data quality problems (rows)', v.problems,
               CASE WHEN v.problems > 0 THEN 'correct or erase them' ELSE 'ok' END));

  RETURN jsonb_build_object(
    'title', 'GDPR compliance report' || coalesce(' — tenant ' || _report_content.tenant, ''),
    'controller', c.name, 'dpo', c.dpo_name || ', ' || c.dpo_contact,
    'database', current_database(),
    'generated_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
    'generated_by', gdpr._caller(),
    'version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'crm_gdpr'),
    'summary', gdpr._report_table(ARRAY['Area', 'Count', 'Status'], summary),
    'sections', sections);
END
$$;

-- One table as HTML or Markdown.
CREATE FUNCTION gdpr._render_table(t jsonb, markdown boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN jsonb_array_length(t -> 'rows') = 0 THEN CASE WHEN markdown THEN E'_None._\n' ELSE '<p class="none">None.</p>' END
    WHEN markdown THEN
      '| ' || (SELECT string_agg(replace(c, '|', '\|'), ' | ') FROM jsonb_array_elements_text(t -> 'columns') c) || E' |\n|'
      || (SELECT string_agg('---|', '') FROM jsonb_array_elements(t -> 'columns')) || E'\n'
      || (SELECT string_agg('| ' || (SELECT string_agg(replace(replace(gdpr._report_cell(v), '|', '\|'), E'\n', ' '), ' | ' ORDER BY o)
                                       FROM jsonb_array_elements(r) WITH ORDINALITY x(v, o)) || E' |\n', '' ORDER BY ro)
            FROM jsonb_array_elements(t -> 'rows') WITH ORDINALITY y(r, ro))
    ELSE
      '<table><thead><tr>' || (SELECT string_agg('<th>' || gdpr._html(c) || '</th>', '') FROM jsonb_array_elements_text(t -> 'columns') c)
      || '</tr></thead><tbody>'
      || (SELECT string_agg('<tr>' || (SELECT string_agg(CASE WHEN v #>> '{}' IN ('ok', 'intact') THEN '<td class="ok">'
                                                              WHEN o = 3 AND t -> 'columns' ->> 2 = 'Status' THEN '<td class="warn">'
                                                              ELSE '<td>' END
                                                         || CASE WHEN jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
                                                                 THEN (SELECT string_agg(gdpr._html(e #>> '{}'), '<br>')
                                                                         FROM jsonb_array_elements(v) e)
                                                                 ELSE gdpr._html(gdpr._report_cell(v)) END || '</td>', '' ORDER BY o)
                                       FROM jsonb_array_elements(r) WITH ORDINALITY x(v, o)) || '</tr>', '' ORDER BY ro)
            FROM jsonb_array_elements(t -> 'rows') WITH ORDINALITY y(r, ro))
      || '</tbody></table>' END;

CREATE FUNCTION gdpr._render_html(doc jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN concat(
    E'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>', gdpr._html(doc ->> 'title'), ' — ',
    gdpr._html(doc ->> 'database'), ' — ', gdpr._html(doc ->> 'generated_at'), '</title>',
    '<style>body{font:13px/1.4 "DejaVu Sans",Arial,sans-serif;color:#222;margin:24px auto;max-width:1100px}',
    'h1{font-size:22px;margin:0}h2{font-size:16px;border-bottom:2px solid #1565c0;padding-bottom:3px;margin-top:28px}',
    'table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}',
    'th{background:#e3eaf5}tr:nth-child(even) td{background:#f7f7f7}.meta{color:#555}.none{color:#777;font-style:italic}',
    'td.ok{color:#2e7d32;font-weight:bold}td.warn{color:#b26a00;font-weight:bold}h3{font-size:14px;margin:16px 0 4px}',
    '.chart{display:block;margin:8px 0}.ct{font-weight:bold;font-size:13px}.cl{font-size:12px}',
    'footer{margin-top:32px;border-top:1px solid #999;color:#555;font-size:11px}',
    '@media print{section{break-inside:avoid}}</style></head><body>', E'\n',
    '<header><h1>', gdpr._html(doc ->> 'title'), '</h1><p class="meta">Controller: ', gdpr._html(coalesce(doc ->> 'controller', 'not set')),
    ' · DPO: ', gdpr._html(coalesce(doc ->> 'dpo', 'not set')), ' · Database: ', gdpr._html(doc ->> 'database'),
    ' · crm_gdpr ', gdpr._html(doc ->> 'version'), '<br>Generated on <time>', gdpr._html(doc ->> 'generated_at'),
    '</time> by ', gdpr._html(doc ->> 'generated_by'), '</p></header>', E'\n',
    '<section id="summary"><h2>Summary</h2>', gdpr._render_table(doc -> 'summary', false), E'</section>\n',
    (SELECT string_agg(format(E'<section id="%s"><h2>%s</h2>%s%s%s%s</section>\n', s ->> 'id', gdpr._html(s ->> 'title'),
                              coalesce('<p>' || gdpr._html(s ->> 'intro') || '</p>', ''),
                              CASE WHEN s ? 'chart' AND jsonb_typeof(s -> 'chart') = 'object' THEN gdpr._svg_bars(s -> 'chart') ELSE '' END,
                              CASE WHEN s ? 'table' THEN gdpr._render_table(s -> 'table', false) ELSE '' END,
                              (SELECT string_agg('<h3>' || gdpr._html(k ->> 'title') || '</h3>' || gdpr._render_table(k -> 'table', false), '' ORDER BY ko)
                                 FROM jsonb_array_elements(coalesce(s -> 'cards', '[]')) WITH ORDINALITY z(k, ko))), '' ORDER BY o)
       FROM jsonb_array_elements(doc -> 'sections') WITH ORDINALITY x(s, o)),
    '<footer><p>Signature of the data protection officer: ____________________ Date: __________</p>', E'\n');

CREATE FUNCTION gdpr._render_markdown(doc jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN concat(
    '# ', doc ->> 'title', E'\n\n',
    'Controller: ', coalesce(doc ->> 'controller', 'not set'), ' · DPO: ', coalesce(doc ->> 'dpo', 'not set'),
    ' · Database: ', doc ->> 'database', ' · crm_gdpr ', doc ->> 'version', E'  \n',
    'Generated on ', doc ->> 'generated_at', ' by ', doc ->> 'generated_by', E'\n\n',
    E'## Summary\n\n', gdpr._render_table(doc -> 'summary', true), E'\n',
    (SELECT string_agg(format(E'## %s\n\n%s%s%s\n', s ->> 'title', coalesce((s ->> 'intro') || E'\n\n', ''),
                              CASE WHEN s ? 'table' THEN gdpr._render_table(s -> 'table', true) ELSE '' END,
                              (SELECT string_agg(E'### ' || (k ->> 'title') || E'\n\n' || gdpr._render_table(k -> 'table', true) || E'\n', '' ORDER BY ko)
                                 FROM jsonb_array_elements(coalesce(s -> 'cards', '[]')) WITH ORDINALITY z(k, ko))), '' ORDER BY o)
       FROM jsonb_array_elements(doc -> 'sections') WITH ORDINALITY x(s, o)),
    E'Signature of the data protection officer: ____________________ Date: __________\n\n');

-- The report: format 'html' (default) or 'markdown'.  The last lines give the
-- SHA-256 of everything before the line <!-- sha256 -->.
CREATE FUNCTION gdpr.compliance_report(format text DEFAULT 'html', tenant text DEFAULT NULL) RETURNS text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  body text;
  digest text;
BEGIN
  PERFORM gdpr._one_of(format, ARRAY['html', 'markdown'], 'report format');
  -- A tenant's report (issue 19.4): its purposes and the global ones.
  IF tenant IS NOT NULL AND NOT EXISTS (SELECT FROM gdpr.tenants t WHERE t.name = compliance_report.tenant) THEN
    RAISE EXCEPTION 'tenant "%" does not exist', tenant USING ERRCODE = 'undefined_object';
  END IF;
  body := CASE format WHEN 'html' THEN gdpr._render_html(gdpr._report_content(tenant))
                      ELSE gdpr._render_markdown(gdpr._report_content(tenant)) END;
  digest := encode(sha256(convert_to(body, 'UTF8')), 'hex');
  RETURN body || E'<!-- sha256 -->\n' || CASE format
    WHEN 'html' THEN '<p id="digest">SHA-256 of this document before its digest line: <code>' || digest
                     || E'</code></p></footer></body></html>\n'
    ELSE 'SHA-256 of this document before its digest line: `' || digest || E'`\n' END;
END
$$;

-- Whether a report is unchanged since it was produced: its digest line
-- matches the SHA-256 of what precedes it.
CREATE FUNCTION gdpr.verify_report(report text) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN position(E'<!-- sha256 -->\n' IN report) > 0
     AND substring(report FROM position(E'<!-- sha256 -->\n' IN report)) ~
         ('[`>]' || encode(sha256(convert_to(left(report, position(E'<!-- sha256 -->\n' IN report) - 1), 'UTF8')), 'hex') || '[`<]');

GRANT EXECUTE ON FUNCTION gdpr.compliance_report(text, text), gdpr.verify_report(text) TO gdpr_admin, gdpr_auditor;
