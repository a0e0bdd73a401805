"""Verifiable rewards, run on the host (never imports JAX or model code).

`math.grade(response, reference_answer)` grades a math response;
`code.run_program(program, tests)` / `code.run_many(...)` run model-written
programs against unit tests in a sandbox.
"""
