pytest_plugins = [
    "bilancio_pipeline_tests.fixtures.postgres",
    "bilancio_pipeline_tests.fixtures.s3",
]
