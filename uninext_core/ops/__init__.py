"""Model-free tensor maths shared by the model, the losses and the task logic (boxes, ...)."""
