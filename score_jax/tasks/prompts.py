"""Prompts and correction instructions (SCoRe, Kumar et al. 2024, App. C).

Module-level constants so a config can replace any of them: every task takes
`prompt_template=` and `correction_instruction=` options. Templates use
`str.format` fields named in each constant's comment.
"""

_MATH_FORMAT = ('At the end of the Solution, when you give your final answer, '
                'write it in the form "Final Answer: The final answer is '
                '$answer$. I hope it is correct."')

# Fields: {problem}. Zero-shot turn 1 for MATH and GSM8K.
MATH_PROMPT = (
    "You are a math expert. When you respond, respond only with the Solution "
    "of the final Problem, thinking step by step. " + _MATH_FORMAT +
    "\n\nProblem:\n{problem}\n\nSolution:")

# Turn-2 instruction for the math family (MATH, GSM8K).
MATH_CORRECTION = (
    "There might be an error in the solution above because of lack of "
    "understanding of the question. Please correct the error, if any, and "
    "rewrite the solution. Only output the final solution! " + _MATH_FORMAT)

# Turn-2 instruction for code (MBPP, HumanEval).
CODE_CORRECTION = (
    "There might be an error in the code above because of lack of "
    "understanding of the question. Please correct the error, if any, and "
    "rewrite the solution. Only output the final correct Python program!")

# Fields: {text}, {tests}, {code}. One MBPP example (Austin et al. 2021).
MBPP_SHOT = ("You are an expert Python programmer, and here is your task: "
             "{text} Your code should pass these tests:\n\n{tests}\n"
             "[BEGIN]\n{code}\n[DONE]\n")
# Fields: {shots} (three MBPP_SHOT blocks), {text}, {tests}. Turn 1 for MBPP.
MBPP_PROMPT = ("{shots}You are an expert Python programmer, and here is your "
               "task: {text} Your code should pass these tests:\n\n{tests}\n"
               "[BEGIN]\n")

# Fields: {prompt} (signature + docstring). Turn 1 for HumanEval.
HUMANEVAL_PROMPT = (
    "Complete the following Python function. Output the whole function "
    "(signature included) as one Python program.\n\n```python\n{prompt}```")

# Fields: {question}. Turn 1 for procedural tasks and the arithmetic task.
ANSWER_LINE_PROMPT = (
    "{question}\n\nThink step by step. End your response with a last line of "
    'the form "Answer: <answer>" and nothing after it.')

# Turn-2 instruction for tasks graded on the last "Answer:" line.
ANSWER_LINE_CORRECTION = (
    "There might be an error in the solution above because of lack of "
    "understanding of the question. Please correct the error, if any, and "
    "rewrite the solution. Only output the final solution! End with a last "
    'line of the form "Answer: <answer>".')

# Fields: {expression}. Turn 1 for the built-in arithmetic task.
ARITHMETIC_PROMPT = (
    "Compute {expression}. Show your work, then give the result on a last "
    'line of the form "Answer: <integer>".')
