-- The 95% confidence interval of the sweep's mean trading effect (Student t over the pairs).
alter table public.job_metrics add column trading_effect_ci_low double precision;
alter table public.job_metrics add column trading_effect_ci_high double precision;
