-- Heroku's rules: the provision's grant exchanged outside the request, and a second way for runs to
-- start (the helper app asks) for resources Heroku will not let the add-on launch dynos for.

alter table resources
    add column oauth_grant_code bytea,          -- sealed; kept until exchanged, refused or expired
    add column oauth_grant_expires_at timestamptz,
    add column run_mode text not null default 'launched' check (run_mode in ('launched', 'pulled')),
    add column run_mode_reason text,            -- why a resource is pulled, as its owner is shown it
    add column pulled_at timestamptz,           -- since when
    add column last_asked_at timestamptz;       -- when its helper app last asked for a run (`run-due`)

create index resources_grants_pending on resources (id) where oauth_grant_code is not null;
