"""Residents' appeals (居民诉求): the categories an appeal can have and the classifier that
gives one to an appeal's Chinese text. Intake, routing and deadlines come later."""
