-- Managed storage: a resource's plan decides where its backups go; what each run may write there.

-- 'byo' (bring your own target) is today's behaviour; every other plan stores in the add-on's storage
alter table resources alter column plan set default 'byo';
update resources set plan = 'byo' where plan = 'local';
-- the policy the clock applies in the add-on's storage (control/options.py's default)
alter table resources add column retention text not null default 'daily=7,weekly=4,monthly=12';
alter table resources add column storage_checked_at timestamptz;  -- the clock's last pass over its storage
alter table resources add column storage_purged_at timestamptz;   -- everything deleted, after deprovisioning

-- the one backup a run writes in the add-on's storage, claimed by its first write
alter table runs add column storage_label text;
alter table runs add column storage_id text;
alter table runs add column committed_at timestamptz;        -- its manifest is stored: the run writes nothing more
create unique index runs_storage_backup on runs (resource_id, storage_id) where storage_id is not null;

create table storage_uploads (
    id uuid primary key,
    run_id uuid not null references runs (id),
    key text not null,                   -- relative to the resource's folder
    upload_id text not null,             -- S3's
    created_at timestamptz not null default now(),
    completed_at timestamptz,
    aborted_at timestamptz
);
create index storage_uploads_open on storage_uploads (run_id) where completed_at is null and aborted_at is null;

-- each part's SHA-256 as granted, for the completion (S3 checks it against the part it holds)
create table storage_parts (
    upload uuid not null references storage_uploads (id) on delete cascade,
    number integer not null,
    sha256 text not null,                -- base64, as S3 takes it
    size bigint not null,
    primary key (upload, number)
);
