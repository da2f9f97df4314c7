"""What is published: plots (plotly figures for the pages), the paper's figures and experiment
matrix, reproduce, the report and its external-validity section, and the shipped demo runs.
Imports evaluation and everything beneath it."""
