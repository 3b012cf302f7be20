-- The files each run of a sweep keeps: all, summary (no event log) or none.
alter table public.jobs add column artifact_policy text not null default 'all';
