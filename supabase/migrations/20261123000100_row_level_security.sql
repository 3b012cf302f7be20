-- Who may read and write. Supabase hands its publishable "anon" key to anyone who asks, so
-- the roles behind the public keys (anon, authenticated) may only read; writes need the
-- service_role key (the pipeline) or a direct database login (the table owner).
--
-- Supabase already has these roles. On a plain PostgreSQL they are created here (without
-- login) so that the same migrations apply everywhere.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit;
    end if;
end
$$;

grant usage on schema public to anon, authenticated, service_role;

-- Privileges: read for the public roles, read and write for service_role. Supabase grants
-- every privilege on new tables to all three roles by default, so revoke explicitly; TRUNCATE
-- in particular ignores row-level security.
revoke all on public.jobs, public.runs, public.metrics, public.job_events, public.job_metrics,
    public.run_results from anon, authenticated;
grant select on public.jobs, public.runs, public.metrics, public.job_events, public.job_metrics,
    public.run_results to anon, authenticated;

revoke truncate on public.jobs, public.runs, public.metrics, public.job_events, public.job_metrics
    from service_role;
grant select, insert, update, delete on public.jobs, public.runs, public.metrics,
    public.job_events, public.job_metrics to service_role;
grant select on public.run_results to service_role;
grant usage, select on sequence public.job_events_id_seq to service_role;

-- Row-level security on every table; the policies say the same as the grants, so a grant
-- added by mistake later still cannot open writes to the public roles.
alter table public.jobs enable row level security;
alter table public.runs enable row level security;
alter table public.metrics enable row level security;
alter table public.job_events enable row level security;
alter table public.job_metrics enable row level security;

create policy jobs_read on public.jobs for select to anon, authenticated using (true);
create policy runs_read on public.runs for select to anon, authenticated using (true);
create policy metrics_read on public.metrics for select to anon, authenticated using (true);
create policy job_events_read on public.job_events for select to anon, authenticated using (true);
create policy job_metrics_read on public.job_metrics for select to anon, authenticated using (true);

create policy jobs_service_role_all on public.jobs for all to service_role using (true) with check (true);
create policy runs_service_role_all on public.runs for all to service_role using (true) with check (true);
create policy metrics_service_role_all on public.metrics for all to service_role using (true) with check (true);
create policy job_events_service_role_all on public.job_events for all to service_role using (true) with check (true);
create policy job_metrics_service_role_all on public.job_metrics for all to service_role using (true) with check (true);
