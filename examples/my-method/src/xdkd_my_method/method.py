"""`my_kd`: KD whose distillation term is weighted, image by image, by the teacher's confidence.

Hinton et al. 2015's KL(softmax(z_t/T) || softmax(z_s/T)) * T^2 on source and unlabelled
target images, each image's term scaled by the teacher's top-1 probability (confident
predictions teach more), beside cross-entropy on the source labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.methods.base import Method
from benchmark.methods.registry import METHODS
from benchmark.suite.protocols import Needs


@METHODS.register("my_kd")
class MyKD(Method):
    family = "logit"
    paper = "Example plug-in after Hinton et al. 2015, Distilling the Knowledge in a Neural Network"
    defaults = {"temperature": 4.0, "kd_weight": 0.9}
    needs = Needs(teacher="logits", target_images=True)

    def losses(self, student, teacher, batch) -> dict[str, torch.Tensor]:
        images = batch.all_images()  # source images, then unlabelled target images
        logits = student(images)
        teacher_logits = teacher(images)  # the teachers' ensemble, without gradients
        temperature = self.params["temperature"]
        log_student = F.log_softmax(logits / temperature, dim=1)
        log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
        per_image = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(1)
        confidence = teacher_logits.softmax(1).amax(1)
        n = len(batch.source_labels)
        return {
            "ce": self.cross_entropy(logits[:n], batch.source_labels),
            "kd": self.params["kd_weight"] * (confidence * per_image).mean() * temperature**2,
        }
