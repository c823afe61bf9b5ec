-- One tenant's failure is that tenant's alone: runs queued for a worker, one active run per resource,
-- webhooks delivered from a table outside any transaction, secrets sealed, SSO logins used once.

-- API tokens are random; a Heroku resource's is also sealed, so that a repeated provision answers it
alter table resources add column api_token_sealed bytea;
-- webhook URLs are sealed like OAuth tokens; `remora-control migrate` seals the plaintext ones left
-- here and empties them (a later migration drops the column)
alter table resources rename column alert_webhook to alert_webhook_legacy;
alter table resources add column alert_webhook_sealed bytea;
-- why the clock could not use the stored schedule (scheduled runs stop until it is changed)
alter table resources add column schedule_error text;

-- a run gets its token when a worker claims it to launch, not when it is queued
alter table runs alter column token_hash drop not null;
alter table runs add column claimed_at timestamptz;
alter table runs add column started_by text;  -- the process that sent `started` first: the run is its

-- at most one active run per resource: end the older ones of any resource that has several
update runs r set state = 'failed', finished_at = now(), error = 'ended: a newer run of the resource was active'
    where state in ('queued', 'launched', 'running') and exists (
        select 1 from runs o where o.resource_id = r.resource_id and o.state in ('queued', 'launched', 'running')
        and (o.created_at, o.id) > (r.created_at, r.id));
create unique index runs_one_active on runs (resource_id) where state in ('queued', 'launched', 'running');
create index runs_queued on runs (created_at) where state = 'queued' and claimed_at is null;
create index runs_triggered on runs (resource_id, created_at) where trigger in ('api', 'dashboard');

-- what each webhook is to be told, in order, at least once
create table webhook_deliveries (
    id bigint generated always as identity primary key,
    resource_id uuid not null references resources (id),
    body jsonb not null,                 -- {"event": "backups.missing" | "backups.recovered", ...}
    created_at timestamptz not null default now(),
    attempts integer not null default 0,
    next_attempt_at timestamptz default now(),  -- null: delivered, or given up
    last_attempt_at timestamptz,
    last_error text,
    delivered_at timestamptz
);
create index webhook_deliveries_due on webhook_deliveries (resource_id, id) where next_attempt_at is not null;

-- what the webhooks had not been told yet becomes a delivery
insert into webhook_deliveries (resource_id, body)
    select id, jsonb_build_object('event', case when alert_open then 'backups.missing' else 'backups.recovered' end,
                                  'resource_id', id, 'app', app,
                                  'reason', case when alert_open then alert_reason end, 'since', alert_opened_at)
    from resources
    where alert_webhook_legacy is not null and deprovisioned_at is null
      and ((alert_open and alert_notified is distinct from 'missing') or (not alert_open and alert_notified = 'missing'));
alter table resources drop column alert_notified;

-- Heroku's SSO links seen within their window: a replayed form opens no second session
create table sso_logins (
    resource_id uuid not null,
    timestamp bigint not null,
    used_at timestamptz not null default now(),
    primary key (resource_id, timestamp)
);
