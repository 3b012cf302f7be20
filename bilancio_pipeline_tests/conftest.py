pytest_plugins = [
    "bilancio_pipeline_tests.fixtures.postgres",
    "bilancio_pipeline_tests.fixtures.s3",
    "bilancio_pipeline_tests.fixtures.dagster_dev",
]
