pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.aws", "tests.integration.harness"]
