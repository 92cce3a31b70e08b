"""The book's experiments: one module per chapter, named after its notebook.

``ch01_what_is_parameter_sharing`` … ``ch09_final_considerations`` hold each chapter's
experiments, result types and explorer renderers. They build on the core of :mod:`shared_lib`,
which never imports them. Importing this package imports no chapter.
"""
