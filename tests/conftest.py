pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.aws", "tests.fakes.mailjet", "tests.integration.harness"]
