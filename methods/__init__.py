"""The method folders as a package, so that one method builds on another by a plain import
(``from methods.clap.method import CLAP`` in an ablation) and the code hash follows it as it follows
any import. Each folder is a namespace subpackage; a new one needs no __init__.py. Keep this file
empty of code: every method's job imports it, so an edit here re-runs them all.
"""
