"""VGG16 as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's)."""
from src.registry import ModelSpec, register_model

SPEC = register_model(ModelSpec("vgg16", "classification", builder="src.vgg16.net:vgg16",
                                input_multiple="src.vgg16.net:DOWNSAMPLE"))
