"""SimpleITK's ``ReadImage`` on a SEG, the way many training pipelines open medical images: a consumer."""
