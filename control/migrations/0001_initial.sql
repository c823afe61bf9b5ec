-- Resources (one per add-on attachment or per `resource create`), their runs, and schedules.

create table resources (
    id uuid primary key,                 -- Heroku's add-on uuid, or a new one for local resources
    app text,                            -- the helper app's name or id (looked up when Heroku did not say)
    plan text not null default 'local',
    region text,
    api_token_hash bytea not null unique,  -- sha256 of the resource's API token
    schedule text,                       -- cron expression, in `timezone`; null: on demand only
    timezone text not null default 'UTC',
    next_run_at timestamptz,             -- when the clock launches the next scheduled run
    alert_webhook text,
    alert_open boolean not null default false,  -- an incident is open: backups missing, not yet recovered
    alert_reason text,
    alert_opened_at timestamptz,
    alert_notified text check (alert_notified in ('missing', 'recovered')),  -- the last event the webhook got
    oauth_access_token bytea,            -- Fernet-encrypted
    oauth_refresh_token bytea,           -- Fernet-encrypted
    oauth_expires_at timestamptz,
    created_at timestamptz not null default now(),
    deprovisioned_at timestamptz
);

create index resources_due on resources (next_run_at)
    where next_run_at is not null and deprovisioned_at is null;

create table runs (
    id uuid primary key,
    resource_id uuid not null references resources (id),
    trigger text not null check (trigger in ('schedule', 'api', 'dashboard')),
    scheduled_for timestamptz,           -- the schedule's time a scheduled run stands for
    state text not null default 'queued'
        check (state in ('queued', 'launched', 'running', 'succeeded', 'failed', 'lost')),
    token_hash bytea not null,           -- sha256 of REMORA_RUN_TOKEN
    time_to_live integer not null,       -- seconds the dyno may live
    handle text,                         -- the launcher's name for the process (dyno id, pid)
    created_at timestamptz not null default now(),
    launched_at timestamptz,
    last_event_at timestamptz,
    finished_at timestamptz,
    bytes_done bigint,
    backup_id text,
    dump_bytes bigint,
    encrypted_bytes bigint,
    sha256 text,
    exit_code integer,
    error text,
    unique (resource_id, scheduled_for)  -- a schedule's time makes one run, whatever the clocks do
);

create index runs_by_resource on runs (resource_id, created_at desc, id desc);
create index runs_unfinished on runs (created_at) where state in ('queued', 'launched', 'running');
